"""Where a measurement turns into an answer: the thresholds of `rayalign advise --measure`, with
their defaults and why, and the pure rules that read each question's figures against them.

    knows      the best prompting baseline's held-out mean >= target (default 0.8: the task's
               score must be mostly right as asked, e.g. 80% of answers obey the rule; set
               --target to what your users need)
    data_easy  at least --min-records usable demonstrations (default 500; LIMA aligned a model
               with 1,000 curated ones, a few hundred is the usual floor for one task), at most
               --max-invalid of the file failing validation (default 5%), distinct word bigrams
               per bigram >= --min-distinct (default 0.3: lower means the records repeat each
               other's wording) and at most --max-near-dup of them near-duplicates (default 10%)
    compute    full fine-tuning's estimated memory per device <= --headroom of the device's memory
               (default 0.8: allocator fragmentation and spikes take the rest)
    ai         generate: a small synthetic batch keeps >= --min-yield of its candidates (default
               0.25) and, when --rewards judge it, their mean >= --min-quality (default 0.7);
               else verify: the judge agrees with your labelled pairs on >= --min-agreement
               (default 0.8, both orders asked); else neither

Each rule returns an `Answer` with source "measured" and the evidence in words, or None when
the figures cannot decide (e.g. no labelled pairs to check the judge against).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from rayalign.advisor.framework import Answer


@dataclass(frozen=True)
class Thresholds:
    target: float = 0.8
    min_records: int = 500
    max_invalid: float = 0.05
    min_distinct: float = 0.3
    max_near_dup: float = 0.1
    headroom: float = 0.8
    min_yield: float = 0.25
    min_quality: float = 0.7
    min_agreement: float = 0.8

    @classmethod
    def flags(cls) -> dict[str, object]:
        """Flag name -> default, for the command line (`--min-records` for min_records)."""
        return {"--" + item.name.replace("_", "-"): item.default for item in fields(cls)}


def _measured(value: str, evidence: str) -> Answer:
    return Answer(value, source="measured", evidence=evidence)


def knows(figures: dict, limits: Thresholds) -> Answer:
    best, score = figures["held_out_mean"], figures["select_by"]
    verdict = "yes" if best >= limits.target else "no"
    return _measured(verdict, f"best prompt {figures['chosen']!r} (of {figures['variants']}, chosen on "
                     f"{figures['dev_prompts']} dev prompts) scores {score} {best:.3f} on {figures['held_out_prompts']} "
                     f"held-out prompts {'>=' if verdict == 'yes' else '<'} target {limits.target:g}")


def data_easy(figures: dict, limits: Thresholds) -> Answer:
    records = figures["records"]
    invalid_share = figures["invalid"] / records if records else 1.0
    short = [reason for failed, reason in (
        (figures["usable"] < limits.min_records, f"{figures['usable']} usable < {limits.min_records}"),
        (invalid_share > limits.max_invalid, f"{invalid_share:.1%} invalid > {limits.max_invalid:.0%}"),
        (figures["distinct_2"] < limits.min_distinct, f"distinct-2 {figures['distinct_2']:.2f} < {limits.min_distinct:g}"),
        (figures["near_duplicate_share"] > limits.max_near_dup,
         f"{figures['near_duplicate_share']:.1%} near-duplicates > {limits.max_near_dup:.0%}"),
    ) if failed]
    evidence = (f"{figures['path']}: {records} records, {figures['usable']} usable demonstrations, "
                f"{figures['invalid']} fail validation, {figures['other_format']} of another format; distinct-2 "
                f"{figures['distinct_2']:.2f}, near-duplicates {figures['near_duplicate_share']:.1%}")
    if figures.get("first_errors"):
        evidence += f"; first error: {figures['first_errors'][0]}"
    return _measured("no" if short else "yes", evidence + (f" (short of: {'; '.join(short)})" if short else
                                                           " (every threshold met)"))


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _gb(value: float) -> str:
    return f"{value / 2**30:.1f} GiB"


def compute(figures: dict, limits: Thresholds) -> Answer:
    device, full, lora = figures["device_memory"], figures["full_per_device"], figures["lora_per_device"]
    budget = limits.headroom * device
    verdict = "high" if full <= budget else "low"
    evidence = (f"{figures['params'] / 1e6:.0f}M parameters ({figures['dtype']}); {figures['devices']} "
                f"{figures['device']} of {_gb(device)} each; full fine-tuning (ZeRO-{figures['zero_stage']}) needs "
                f"about {_gb(full)} per {figures['device']}, LoRA about {_gb(lora)}; budget {limits.headroom:g} x "
                f"{_gb(device)} = {_gb(budget)}")
    if verdict == "low" and lora > budget:
        evidence += "; LoRA does not fit either: a smaller model, quantization or more devices"
    return _measured(verdict, evidence)


def ai(generate: dict | None, verify: dict | None, limits: Thresholds) -> Answer | None:
    parts, verdict = [], None
    if generate is not None:
        quality = generate.get("quality")
        writes = generate["yield"] >= limits.min_yield and (quality is None or quality >= limits.min_quality)
        parts.append(f"generate: {generate['kept']} of {generate['candidates']} synthetic candidates kept "
                     f"(yield {generate['yield']:.2f} {'>=' if generate['yield'] >= limits.min_yield else '<'} "
                     f"{limits.min_yield:g})" + ("" if quality is None else
                                                 f", judged quality {quality:.2f} vs {limits.min_quality:g}"))
        verdict = "generate" if writes else None
    if verify is not None:
        agreement = verify["agreement"]
        parts.append(f"verify: the judge agrees with {verify['pairs']} labelled pairs on "
                     f"{_share(agreement)} (both orders; needs "
                     f"{limits.min_agreement:g}, position bias: first answer wins "
                     f"{_share(verify['first_position_wins'])})")
        if verdict is None:
            verdict = "verify" if agreement is not None and agreement >= limits.min_agreement else "neither"
    if verdict is None:
        return None        # generation failed and no labelled pairs to check the judge: undecided
    return _measured(verdict, "; ".join(parts))
