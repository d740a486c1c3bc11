"""OpenAI graders as an RL reward source: each grader scores one (completion, row) pair.

Templates: `{{ sample.output_text }}` is the completion, `{{ sample.output_json.<f> }}` a field of
the completion parsed as JSON, `{{ item.<f>[.<g>] }}` a field of the prompt row's metadata. A
field the row lacks, or output that is not JSON, is a RewardError naming the grader and row.
A score_model answer without a number is a RewardError too (no silent fallback score); its
first number, clipped to the grader's `range`, is the score. string_check's `like` is "the
input contains the reference", `ilike` the same ignoring case. A python grader runs isolated
(rayalign/rewards/sandbox.py), a batch to a process.
"""

from __future__ import annotations

import ast
import functools
import json
import math
import re

from rapidfuzz import fuzz

from rayalign.config.graders import (FORMULA_FUNCTIONS, TEMPLATE, MultiGrader, PythonGrader, ScoreModelGrader,
                                     StringCheckGrader, TextSimilarityGrader, check_formula, walk)
from rayalign.rewards.remote import JsonClient
from rayalign.rewards.sandbox import run_python_grader
from rayalign.rewards.values import RewardError

NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
FUNCTIONS = {"min": min, "max": max, "abs": abs, "floor": math.floor, "ceil": math.ceil, "exp": math.exp,
             "sqrt": math.sqrt, "log": math.log}
assert set(FUNCTIONS) == set(FORMULA_FUNCTIONS)


def render(template: str, completion: str, row: dict, where: str) -> str:
    """`template` with every {{ variable }} filled from the completion and the row."""
    def value(match: re.Match) -> str:
        head, _, path = match.group(1).partition(".")
        if head == "sample" and path == "output_text":
            return completion
        if head == "sample":
            try:
                current = json.loads(completion)
            except ValueError:
                raise RewardError(f"{where}: {{{{ {match.group(1)} }}}} but the output is not JSON") from None
            keys = path.split(".")[1:]
        else:
            current, keys = row, path.split(".")
        for key in keys:
            if not isinstance(current, dict) or key not in current:
                raise RewardError(f"{where}: {{{{ {match.group(1)} }}}} has no value (missing {key!r})")
            current = current[key]
        return current if isinstance(current, str) else json.dumps(current)
    return TEMPLATE.sub(value, template)


def similarity(metric: str, text: str, reference: str) -> float:
    """fuzzy_match: rapidfuzz's normalised Indel similarity of the characters; bleu (smoothing
    method1) and gleu: NLTK on whitespace-split words; rouge_*: rouge-score's F-measure."""
    if metric == "fuzzy_match":
        return fuzz.ratio(text, reference) / 100.0
    if metric in ("bleu", "gleu"):
        from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
        from nltk.translate.gleu_score import sentence_gleu

        hyp, ref = text.split(), reference.split()
        if metric == "gleu":
            return sentence_gleu([ref], hyp)
        return sentence_bleu([ref], hyp, smoothing_function=SmoothingFunction().method1)
    from rouge_score import rouge_scorer

    key = metric.replace("_", "").replace("rougel", "rougeL")
    return rouge_scorer.RougeScorer([key]).score(reference, text)[key].fmeasure


class GraderScorer:
    """One grader object as a reward source: (prompts, completions, metadata) -> floats."""

    def __init__(self, grader, url: str | None = None, api_key_env: str | None = None,
                 timeout_s: float = 120.0, name: str = "grader"):
        self.grader, self.name = grader, name
        self.client = None
        if any(isinstance(g, ScoreModelGrader) for g in walk(grader)):  # url: checked when the recipe loads
            endpoint = url if url.rstrip("/").endswith("/chat/completions") else url.rstrip("/") + "/v1/chat/completions"
            self.client = JsonClient(endpoint, api_key_env, timeout_s, name)

    def __call__(self, prompts: list, completions: list, metadata: list[dict] | None = None) -> list[float]:
        metadata = metadata if metadata is not None else [{} for _ in prompts]
        if isinstance(self.grader, PythonGrader):  # one isolated process for the batch
            where = f"grader {self.name!r}, python {self.grader.name!r}"
            return run_python_grader(self.grader.source, list(completions), list(metadata), where)
        return [self.score(self.grader, c, row, f"grader {self.name!r}, row {i}")
                for i, (c, row) in enumerate(zip(completions, metadata))]

    def score(self, grader, completion: str, row: dict, where: str) -> float:
        where = f"{where}, {grader.type} {grader.name!r}"
        if isinstance(grader, MultiGrader):
            values = {key: self.score(sub, completion, row, where) for key, sub in grader.graders.items()}
            return float(evaluate(formula(grader.calculate_output, tuple(values)).body, values, where))
        if isinstance(grader, ScoreModelGrader):
            return self.ask(grader, completion, row, where)
        if isinstance(grader, PythonGrader):
            return run_python_grader(grader.source, [completion], [row], where)[0]
        text, reference = (render(grader.input, completion, row, where), render(grader.reference, completion, row, where))
        if isinstance(grader, StringCheckGrader):
            hit = {"eq": text == reference, "ne": text != reference, "like": reference in text,
                   "ilike": reference.lower() in text.lower()}[grader.operation]
            return float(hit)
        assert isinstance(grader, TextSimilarityGrader)
        return float(similarity(grader.evaluation_metric, text, reference))

    def ask(self, grader: ScoreModelGrader, completion: str, row: dict, where: str) -> float:
        messages = [{"role": m.role, "content": render(m.content, completion, row, where)} for m in grader.input]
        answer = self.client.post({**grader.sampling_params.chat_fields(), "model": grader.model, "messages": messages})
        try:
            content = answer["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise RewardError(f"{where}: not a chat completion: {json.dumps(answer)[:300]}") from None
        found = NUMBER.search(content)
        if not found:
            raise RewardError(f"{where}: the model's answer has no number: {content[:300]!r}")
        low, high = grader.range
        return min(max(float(found.group()), low), high)


@functools.lru_cache(maxsize=64)
def formula(text: str, names: tuple[str, ...]) -> ast.Expression:
    return check_formula(text, set(names))


def evaluate(node: ast.AST, values: dict[str, float], where: str) -> float:
    """A checked calculate_output formula (config/graders.py check_formula) over the sub-scores."""
    if isinstance(node, ast.Constant):
        return float(node.value)  # float powers overflow (a named error) where int ones would grow unbounded
    if isinstance(node, ast.Name):
        return values[node.id]
    if isinstance(node, ast.UnaryOp):
        operand = evaluate(node.operand, values, where)
        return -operand if isinstance(node.op, ast.USub) else operand
    try:
        if isinstance(node, ast.Call):
            return FUNCTIONS[node.func.id](*(evaluate(arg, values, where) for arg in node.args))
        left, right = evaluate(node.left, values, where), evaluate(node.right, values, where)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        if isinstance(node.op, ast.Div):
            return left / right
        return left ** right
    except (ZeroDivisionError, OverflowError, ValueError, TypeError) as exc:
        raise RewardError(f"{where}: calculate_output failed: {exc}") from None
