"""OpenAI grader objects (reinforcement fine-tuning's `grader`), validated in OpenAI's own schema.

A `type: grader` reward source holds one of these under `grader:`; rayalign/rewards/graders.py
scores with it (a `python` grader in a sandbox process, rayalign/rewards/sandbox.py).
`label_model` graders, and the `cosine` and `meteor` metrics, are refused here with the reason
and what to use instead.
"""

from __future__ import annotations

import ast
import re
from typing import Annotated, Literal, Union

from pydantic import Field, field_validator, model_validator

from rayalign.config.sections import _Strict

TEMPLATE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
VARIABLE = re.compile(r"^(sample\.output_text|sample\.output_json(\.[A-Za-z0-9_]+)*|item(\.[A-Za-z0-9_]+)+)$")
FORMULA_FUNCTIONS = ("min", "max", "abs", "floor", "ceil", "exp", "sqrt", "log")
FORMULA_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Name, ast.Call, ast.Load,
                 ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.USub, ast.UAdd)


def check_template(text: str) -> str:
    """`text` unchanged when every {{ ... }} names sample.output_text, sample.output_json[.f] or item.f."""
    for variable in TEMPLATE.findall(text):
        if not VARIABLE.match(variable):
            raise ValueError(f"unknown template variable {{{{ {variable} }}}}: use sample.output_text, "
                             "sample.output_json.<field> or item.<field>")
    return text


class _Grader(_Strict):
    name: str

    @model_validator(mode="after")
    def _templates(self):
        for field in ("input", "reference"):
            if isinstance(getattr(self, field, None), str):
                check_template(getattr(self, field))
        return self


class StringCheckGrader(_Grader):
    type: Literal["string_check"]
    input: str
    reference: str
    operation: Literal["eq", "ne", "like", "ilike"]


class TextSimilarityGrader(_Grader):
    """`pass_threshold` is carried for OpenAI compatibility; it changes nothing in the reward."""

    type: Literal["text_similarity"]
    input: str
    reference: str
    evaluation_metric: Literal["fuzzy_match", "bleu", "gleu", "rouge_1", "rouge_2", "rouge_3", "rouge_4",
                               "rouge_5", "rouge_l", "cosine", "meteor"]
    pass_threshold: float | None = None

    @model_validator(mode="after")
    def _offline(self):
        if self.evaluation_metric == "cosine":
            raise ValueError("evaluation_metric cosine needs OpenAI embeddings, which cannot be reached here; "
                             "use fuzzy_match, bleu, gleu or a rouge_* metric")
        if self.evaluation_metric == "meteor":
            raise ValueError("evaluation_metric meteor needs NLTK's WordNet data, which is not installed offline; "
                             "use bleu, gleu or a rouge_* metric")
        return self


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str
    type: Literal["message"] | None = None

    @model_validator(mode="after")
    def _template(self):
        check_template(self.content)
        return self


class SamplingParams(_Strict):
    """OpenAI's score_model sampling_params; `chat_fields` spells them for /v1/chat/completions."""

    max_completions_tokens: int | None = Field(None, gt=0)
    reasoning_effort: str | None = None
    seed: int | None = None
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)

    def chat_fields(self) -> dict:
        fields = self.model_dump(exclude_none=True)
        if "max_completions_tokens" in fields:
            fields["max_tokens"] = fields.pop("max_completions_tokens")
        return fields


class ScoreModelGrader(_Grader):
    """Asks `model` at the source's url; the number it answers, clipped to `range`, is the score."""

    type: Literal["score_model"]
    model: str
    input: list[ChatMessage] = Field(min_length=1)
    range: tuple[float, float] = (0.0, 1.0)
    sampling_params: SamplingParams = SamplingParams()
    pass_threshold: float | None = None


class MultiGrader(_Grader):
    """`graders` maps the names used in `calculate_output` to graders (OpenAI's API); a single
    grader object, as the openai package's typed model has it, is keyed by its own name."""

    type: Literal["multi"]
    graders: dict[str, "Grader"] = Field(min_length=1)
    calculate_output: str

    @field_validator("graders", mode="before")
    @classmethod
    def _one_grader(cls, value):
        if isinstance(value, dict) and isinstance(value.get("type"), str):
            return {value.get("name", value["type"]): value}
        return value

    @model_validator(mode="after")
    def _formula(self):
        check_formula(self.calculate_output, set(self.graders))
        return self


class PythonGrader(_Grader):
    """`source` defines `grade(sample, item) -> float`; run isolated (rayalign/rewards/sandbox.py).
    `image_tag` is carried for OpenAI compatibility: the grader runs with the worker's Python."""

    type: Literal["python"]
    source: str
    image_tag: str | None = None

    @field_validator("source")
    @classmethod
    def _defines_grade(cls, source: str) -> str:
        try:
            tree = ast.parse(source)
        except SyntaxError as exc:
            raise ValueError(f"source, line {exc.lineno}: {exc.msg}") from None
        if not any(isinstance(node, ast.FunctionDef) and node.name == "grade" for node in tree.body):
            raise ValueError("source must define grade(sample, item) at the top level")
        return source


class RefusedGrader(_Strict):
    """label_model: accepted by OpenAI, refused here with the reason."""

    type: Literal["label_model"]
    model_config = {"extra": "allow"}

    @model_validator(mode="after")
    def _refuse(self):
        raise ValueError("label_model graders are not supported yet; use score_model with a numeric answer")


Grader = Annotated[Union[StringCheckGrader, TextSimilarityGrader, ScoreModelGrader, MultiGrader, PythonGrader,
                         RefusedGrader],
                   Field(discriminator="type")]
MultiGrader.model_rebuild()


def walk(grader):
    """The grader and, for a multi grader, every grader inside it."""
    yield grader
    if isinstance(grader, MultiGrader):
        for sub in grader.graders.values():
            yield from walk(sub)


def check_formula(formula: str, names: set[str]) -> ast.Expression:
    """The parsed `calculate_output`; anything but numbers, sub-grader names, + - * / **, unary minus
    and the functions of FORMULA_FUNCTIONS is refused, naming the bad token."""
    try:
        tree = ast.parse(formula, mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"calculate_output {formula!r} is not a formula: {exc.msg}") from None
    for node in ast.walk(tree):
        if not isinstance(node, FORMULA_NODES):
            bad = ast.get_source_segment(formula, node) or type(node).__name__
            raise ValueError(f"calculate_output: {bad!r} is not allowed (numbers, grader names, + - * / **, "
                             f"and {', '.join(FORMULA_FUNCTIONS)})")
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in FORMULA_FUNCTIONS
                                               and not node.keywords):
            raise ValueError(f"calculate_output: call {ast.get_source_segment(formula, node)!r} is not allowed; "
                             f"functions: {', '.join(FORMULA_FUNCTIONS)}")
        if isinstance(node, ast.Constant) and not isinstance(node.value, (int, float)):
            raise ValueError(f"calculate_output: {node.value!r} is not a number")
        if isinstance(node, ast.Name) and node.id not in names and node.id not in FORMULA_FUNCTIONS:
            raise ValueError(f"calculate_output: {node.id!r} is not one of the graders {sorted(names)}")
    return tree
