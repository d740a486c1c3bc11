"""The method framework as pure decision logic: four questions, the answers, a recommendation.

    1. knows      Does the base model already have the knowledge and ability?   yes -> prompting
    2. data_easy  Is a diverse fine-tuning dataset easy to get?                 yes -> SFT, no -> feedback
    3. compute    Is there a lot of compute?                                    high -> full, low -> LoRA
    4. ai         Is an existing model good enough to generate the data?        generate -> synthetic data,
                  ... or only to verify it?                                     verify -> RLAIF (self-critique),
                                                                                neither -> RLHF, human labels

Only the questions on the path are asked: a model that knows the task needs nothing else
(prompting); the compute question sizes every training path; the AI question arises only when
the data is not easy to get. The compute answer then picks full fine-tuning or LoRA for the
steps that train (see plans.py for how it combines with each data path).

`Answers` holds one `Answer` per question, each with where it came from (a flag, a prompt; later
a measurement) and an optional `evidence` string shown beside it: the seam for
`rayalign advise --measure`, which will fill the same object from the user's own case.
Nothing here reads or writes: the CLI (rayalign/cli/advise.py) asks and prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from rayalign.advisor.plans import PlanStep, Target, plan


@dataclass(frozen=True)
class Question:
    key: str                      # the field of Answers, and the flag (--data-easy for data_easy)
    text: str
    why: str                      # shown before the question is asked
    outcomes: dict[str, str]      # answer -> one line of reasoning for the path

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(self.outcomes)

    def parse(self, text: str) -> str | None:
        """A typed answer: a choice, or a prefix of exactly one choice (y, n, h, g...); else None."""
        text = text.strip().lower()
        matches = [choice for choice in self.choices if text and choice.startswith(text)]
        return matches[0] if len(matches) == 1 else None


QUESTIONS = (
    Question("knows", "Does the base model already have the knowledge and ability the task needs?",
             "Prompting (a system prompt, a template, a few examples) can only draw out what the model has; "
             "it changes no weight and is the cheapest method to try and to undo.",
             {"yes": "it has them: prompting draws them out, no weight changes",
              "no": "it lacks them: prompting cannot add what the model does not have, so tune it"}),
    Question("data_easy", "Is a diverse fine-tuning dataset (demonstrations of the task done well) easy to get?",
             "Supervised fine-tuning imitates demonstrations; without enough varied ones the model must learn "
             "from feedback on its own answers instead, or the data must be made.",
             {"yes": "demonstrations are at hand: SFT learns straight from them",
              "no": "demonstrations are scarce: learn from feedback (RLHF or AI feedback), or make the data"}),
    Question("compute", "Is there a lot of compute (memory to train every weight with its optimizer state)?",
             "Full fine-tuning keeps gradients and optimizer state for every weight (ZeRO spreads them over "
             "workers); LoRA trains small adapters on a frozen base for a fraction of the memory.",
             {"high": "enough to train every weight: full fine-tuning",
              "low": "too little to train every weight: PEFT, LoRA adapters on the frozen base"}),
    Question("ai", "Is an existing model good enough to generate the data, or only to verify (judge) it?",
             "A model that writes good examples makes synthetic data; one that can only tell the better of two "
             "answers can label preferences (RLAIF); if neither, people label them (RLHF).",
             {"generate": "a model can write the data: synthetic data (self-instruct with filters), then SFT",
              "verify": "a model can judge but not write: RLAIF, its labels train a reward model that pays RL "
                        "(or self-critique: rayalign rlaif revise)",
              "neither": "no model is good enough: RLHF, human preference labels train the reward model"}),
)
QUESTION = {question.key: question for question in QUESTIONS}


@dataclass(frozen=True)
class Answer:
    value: str
    source: str = "flag"          # flag | prompt | measured
    evidence: str | None = None   # what the answer rests on, shown with it


@dataclass(frozen=True)
class Answers:
    knows: Answer | None = None
    data_easy: Answer | None = None
    compute: Answer | None = None
    ai: Answer | None = None

    def __post_init__(self):
        for item in fields(self):
            answer = getattr(self, item.name)
            if answer is not None and answer.value not in QUESTION[item.name].choices:
                raise ValueError(f"{QUESTION[item.name].flag}: {answer.value!r} is not one of "
                                 f"{', '.join(QUESTION[item.name].choices)}")

    def value(self, key: str) -> str | None:
        answer = getattr(self, key)
        return None if answer is None else answer.value

    def with_answer(self, key: str, answer: Answer) -> Answers:
        return replace(self, **{key: answer})


def _on_path(key: str, answers: Answers) -> bool:
    if key in ("data_easy", "compute"):
        return answers.value("knows") == "no"
    if key == "ai":
        return answers.value("knows") == "no" and answers.value("data_easy") == "no"
    return True


def path(answers: Answers) -> list[Question]:
    """The questions the answers lead through, in order, up to the first one not yet answered."""
    walked = []
    for question in QUESTIONS:
        if _on_path(question.key, answers):
            walked.append(question)
            if answers.value(question.key) is None:
                break
    return walked


def next_question(answers: Answers) -> Question | None:
    """The question to ask next, or None when the answers reach a method."""
    walked = path(answers)
    return walked[-1] if walked and answers.value(walked[-1].key) is None else None


@dataclass(frozen=True)
class Step:
    question: Question
    answer: Answer

    @property
    def reasoning(self) -> str:
        return self.question.outcomes[self.answer.value]


METHODS = {"prompting": "prompting", "sft": "SFT", "synthetic": "synthetic data, then SFT",
           "rlaif": "RLAIF: AI preference labels -> reward model -> RL",
           "rlhf": "RLHF: human preference labels -> reward model -> RL"}
TUNING = {"high": "full fine-tuning", "low": "LoRA"}


@dataclass(frozen=True)
class Recommendation:
    key: str                      # prompting, or <sft|synthetic|rlaif|rlhf>-<full|lora>
    method: str                   # for people: "SFT (LoRA)"
    steps: list[Step]             # the path through the questions
    plan: list[PlanStep]          # the commands to run, the first one from a recipe
    notes: list[str] = field(default_factory=list)

    @property
    def recipe(self) -> str:
        return self.plan[0].recipe

    @property
    def overrides(self) -> list[str]:
        return self.plan[0].overrides

    @property
    def command(self) -> str:
        return self.plan[0].command()

    @property
    def next_commands(self) -> list[str]:
        return [step.command() for step in self.plan[1:]]


def recommend(answers: Answers, target: Target = Target()) -> Recommendation:
    """The method the answers lead to, with its path and plan; every question on the path must be answered."""
    missing = next_question(answers)
    if missing is not None:
        raise ValueError(f"{missing.flag} is not answered: {missing.text}")
    steps = [Step(question, getattr(answers, question.key)) for question in path(answers)]
    if answers.value("knows") == "yes":
        family = "prompting"
    elif answers.value("data_easy") == "yes":
        family = "sft"
    else:
        family = {"generate": "synthetic", "verify": "rlaif", "neither": "rlhf"}[answers.value("ai")]
    compute = None if family == "prompting" else answers.value("compute")   # not asked on that path
    key, method = (family, METHODS[family]) if compute is None else \
        (f"{family}-{'full' if compute == 'high' else 'lora'}", f"{METHODS[family]} ({TUNING[compute]})")
    steps_plan, notes = plan(family, compute, target)
    return Recommendation(key, method, steps, steps_plan, notes)
