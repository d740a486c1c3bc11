"""TRL-named dataset formats: detection, reading from JSONL / Parquet / datasets folders,
and validation errors that name the file, the line and the field."""

from __future__ import annotations

import json

import pytest

from conftest import write_jsonl
from rayalign.data.formats import (
    CONVERSATIONAL,
    FORMATS,
    LANGUAGE_MODELING,
    PREFERENCE,
    PROMPT_COMPLETION,
    PROMPT_ONLY,
    detect_format,
    load_examples,
    validate,
)
from rayalign.data.readers import SHIPPED_DIR, DataError, Row, read_rows, resolve_data_path

SFT_FORMATS = (LANGUAGE_MODELING, PROMPT_COMPLETION, CONVERSATIONAL)


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def _error(path, accepted=FORMATS) -> DataError:
    with pytest.raises(DataError) as info:
        load_examples(str(path), accepted)
    return info.value


# ---------------------------------------------------------------- formats from JSONL


def test_language_modeling(tmp_path):
    path = write_jsonl(tmp_path / "lm.jsonl", [{"text": "the sea is blue"}, {"text": "the fox"}])
    fmt, rows = load_examples(path)
    assert fmt == LANGUAGE_MODELING
    assert [(r.source, r.line) for r in rows] == [(path, 1), (path, 2)]
    assert rows[0].fields == {"text": "the sea is blue"}


def test_prompt_completion_strings(tmp_path):
    path = write_jsonl(tmp_path / "pc.jsonl", [{"prompt": "What is 3 + 4?", "completion": " 7"}])
    fmt, rows = load_examples(path)
    assert fmt == PROMPT_COMPLETION
    assert rows[0].fields["completion"] == " 7"


def test_prompt_completion_conversational(tmp_path):
    record = {"prompt": [user("What is 3 + 4?")], "completion": [assistant("7")]}
    path = write_jsonl(tmp_path / "pcc.jsonl", [record])
    fmt, rows = load_examples(path)
    assert fmt == PROMPT_COMPLETION
    assert rows[0].fields == record


def test_messages_keep_other_fields_as_metadata(tmp_path):
    record = {"messages": [{"role": "system", "content": "Be brief."}, user("Hi"), assistant("Hello")],
              "task": "greet", "check": {"type": "max_words", "n": 3}}
    path = write_jsonl(tmp_path / "chat.jsonl", [record, record])
    fmt, rows = load_examples(path)
    assert fmt == CONVERSATIONAL
    assert len(rows) == 2
    assert rows[1].fields["check"] == {"type": "max_words", "n": 3}
    assert rows[1].fields["task"] == "greet"


@pytest.mark.parametrize("prompt", ["What is 3 + 4?", [user("What is 3 + 4?")]], ids=["string", "messages"])
def test_prompt_only(tmp_path, prompt):
    path = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": prompt}])
    fmt, rows = load_examples(path)
    assert fmt == PROMPT_ONLY
    assert rows[0].fields["prompt"] == prompt


def test_preference_with_explicit_prompt(tmp_path):
    path = write_jsonl(tmp_path / "pref.jsonl", [{"prompt": "Capital of France?", "chosen": "Paris",
                                                  "rejected": "Rome"}])
    fmt, rows = load_examples(path)
    assert fmt == PREFERENCE
    assert rows[0].fields["chosen"] == "Paris"


def test_preference_with_implicit_prompt(tmp_path):
    record = {"chosen": [user("Capital of France?"), assistant("Paris")],
              "rejected": [user("Capital of France?"), assistant("Rome")]}
    path = write_jsonl(tmp_path / "pref.jsonl", [record])
    fmt, rows = load_examples(path)
    assert fmt == PREFERENCE
    assert "prompt" not in rows[0].fields


@pytest.mark.parametrize("fields, expected", [
    ({"text": "a"}, LANGUAGE_MODELING),
    ({"prompt": "a", "completion": "b"}, PROMPT_COMPLETION),
    ({"messages": [assistant("a")]}, CONVERSATIONAL),
    ({"prompt": "a"}, PROMPT_ONLY),
    ({"prompt": "a", "chosen": "b", "rejected": "c"}, PREFERENCE),
    ({"chosen": "b", "rejected": "c"}, PREFERENCE),
    ({"messages": [assistant("a")], "prompt": "p"}, CONVERSATIONAL),
])
def test_detect_format(fields, expected):
    assert detect_format(Row("x.jsonl", 1, fields)) == expected


def test_blank_lines_are_skipped_but_line_numbers_are_kept(tmp_path):
    path = write_jsonl(tmp_path / "gaps.jsonl", [{"text": "a"}, "", "   ", {"text": "b"}])
    _, rows = load_examples(path)
    assert [r.line for r in rows] == [1, 4]


def test_dot_json_is_read_as_json_lines(tmp_path):
    path = write_jsonl(tmp_path / "lm.json", [{"text": "a"}, {"text": "b"}])
    assert [r.line for r in read_rows(path)] == [1, 2]


# ---------------------------------------------------------------- Parquet, datasets, shipped


def test_parquet_rows_are_numbered_from_one(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(3)]
    path = tmp_path / "pc.parquet"
    pq.write_table(pa.Table.from_pylist(records), path)
    fmt, rows = load_examples(str(path))
    assert fmt == PROMPT_COMPLETION
    assert [(r.source, r.line) for r in rows] == [(str(path), 1), (str(path), 2), (str(path), 3)]
    assert [r.fields for r in rows] == records


def test_parquet_error_names_the_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "lm.parquet"
    pq.write_table(pa.Table.from_pylist([{"text": "fine"}, {"text": " "}]), path)
    error = _error(path)
    assert (error.source, error.line, error.field) == (str(path), 2, "text")
    assert str(error) == f"{path}, line 2, field 'text': empty text"


def test_datasets_folder_rows_are_numbered_from_one(tmp_path):
    import datasets

    records = [{"messages": [user(f"q{i}"), assistant(f"a{i}")]} for i in range(3)]
    folder = tmp_path / "chat"
    datasets.Dataset.from_list(records).save_to_disk(str(folder))
    fmt, rows = load_examples(str(folder))
    assert fmt == CONVERSATIONAL
    assert [(r.source, r.line) for r in rows] == [(str(folder), 1), (str(folder), 2), (str(folder), 3)]
    assert [r.fields for r in rows] == records


def test_datasets_dict_folder_is_rejected_naming_the_splits(tmp_path):
    import datasets

    folder = tmp_path / "splits"
    datasets.DatasetDict({
        "train": datasets.Dataset.from_list([{"text": "a"}]),
        "test": datasets.Dataset.from_list([{"text": "b"}]),
    }).save_to_disk(str(folder))
    error = _error(folder)
    assert str(error) == f"{folder}: holds splits ['train', 'test']; point at one split's folder"
    # one split's folder is fine
    assert load_examples(str(folder / "train"))[0] == LANGUAGE_MODELING


def test_a_plain_folder_is_not_a_datasets_folder(tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    error = _error(folder)
    assert str(error).startswith(f"{folder}: not a datasets folder")


def test_shipped_data_loads():
    fmt, rows = load_examples("shipped:quickstart_train.jsonl", SFT_FORMATS)
    assert fmt == CONVERSATIONAL
    expected = SHIPPED_DIR / "quickstart_train.jsonl"
    assert len(rows) == sum(1 for line in expected.open() if line.strip())
    assert rows[0].source == str(expected)
    assert [r.line for r in rows] == list(range(1, len(rows) + 1))
    assert rows[0].fields == json.loads(expected.open().readline())
    assert resolve_data_path("shipped:quickstart_eval.jsonl") == SHIPPED_DIR / "quickstart_eval.jsonl"


def test_unknown_shipped_name():
    error = _error("shipped:nope.jsonl")
    assert str(error) == "shipped:nope.jsonl: no such file or folder"


# ---------------------------------------------------------------- malformed records


def test_invalid_json_names_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"text": "a"}, {"text": "b"}, '{"text": "c",'])
    error = _error(path)
    assert (error.source, error.line, error.field) == (path, 3, None)
    assert str(error).startswith(f"{path}, line 3: not valid JSON")


def test_a_line_that_is_not_an_object(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"text": "a"}, "[1, 2]"])
    error = _error(path)
    assert str(error) == f"{path}, line 2: expected a JSON object, got list"


def test_missing_completion_is_prompt_only_which_sft_rejects(tmp_path):
    path = write_jsonl(tmp_path / "sft.jsonl", [{"prompt": "What is 3 + 4?"}])
    error = _error(path, SFT_FORMATS)
    assert (error.source, error.line) == (path, 1)
    assert str(error) == (f"{path}, line 1: is prompt-only data; this method takes "
                          "language-modeling or prompt-completion or conversational")


def test_missing_completion_on_a_later_line_names_that_line(tmp_path):
    path = write_jsonl(tmp_path / "sft.jsonl", [{"prompt": "a", "completion": "b"}, {"prompt": "c"}])
    error = _error(path, SFT_FORMATS)
    assert error.line == 2
    assert "is prompt-only data" in str(error)


def test_empty_text(tmp_path):
    path = write_jsonl(tmp_path / "lm.jsonl", [{"text": "a"}, {"text": "  \n"}])
    error = _error(path)
    assert str(error) == f"{path}, line 2, field 'text': empty text"


def test_empty_completion(tmp_path):
    path = write_jsonl(tmp_path / "pc.jsonl", [{"prompt": "a", "completion": ""}])
    assert str(_error(path)) == f"{path}, line 1, field 'completion': empty text"


def test_text_that_is_not_a_string(tmp_path):
    path = write_jsonl(tmp_path / "lm.jsonl", [{"text": 5}])
    assert str(_error(path)) == f"{path}, line 1, field 'text': expected a string, got int"


def test_message_with_a_bad_role(tmp_path):
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": [user("hi"), {"role": "bot", "content": "yo"}]}])
    error = _error(path)
    assert (error.line, error.field) == (1, "messages[1].role")
    assert str(error).startswith(f"{path}, line 1, field 'messages[1].role': expected one of")
    assert "got 'bot'" in str(error)


def test_message_content_not_a_string(tmp_path):
    path = write_jsonl(tmp_path / "chat.jsonl", [
        {"messages": [user("hi"), assistant("yo")]},
        {"messages": [user("hi"), {"role": "assistant", "content": ["yo"]}]},
    ])
    error = _error(path)
    assert str(error) == f"{path}, line 2, field 'messages[1].content': missing or not a string"


def test_message_that_is_not_an_object(tmp_path):
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": ["hi"]}])
    assert str(_error(path)) == f"{path}, line 1, field 'messages[0]': expected a message object, got str"


@pytest.mark.parametrize("messages", [[], "hello"], ids=["empty", "string"])
def test_messages_must_be_a_non_empty_list(tmp_path, messages):
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": messages}])
    assert str(_error(path)) == f"{path}, line 1, field 'messages': expected a non-empty list of messages"


def test_conversation_without_an_assistant_turn(tmp_path):
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": [{"role": "system", "content": "s"}, user("hi")]}])
    error = _error(path)
    assert (error.line, error.field) == (1, "messages")
    assert str(error) == f"{path}, line 1, field 'messages': no assistant message to learn from"


def test_prompt_completion_mixing_strings_and_messages(tmp_path):
    path = write_jsonl(tmp_path / "pc.jsonl", [{"prompt": "q", "completion": [assistant("a")]}])
    error = _error(path)
    assert str(error) == (f"{path}, line 1, field 'completion': "
                          "prompt and completion must both be strings or both message lists")


def test_preference_with_identical_chosen_and_rejected(tmp_path):
    path = write_jsonl(tmp_path / "pref.jsonl", [
        {"prompt": "q", "chosen": "a", "rejected": "b"},
        {"prompt": "q", "chosen": "same", "rejected": "same"},
    ])
    error = _error(path)
    assert (error.line, error.field) == (2, "rejected")
    assert str(error) == f"{path}, line 2, field 'rejected': identical to chosen"


def test_preference_missing_rejected(tmp_path):
    path = write_jsonl(tmp_path / "pref.jsonl", [{"prompt": "q", "chosen": "a"}])
    assert str(_error(path)) == f"{path}, line 1, field 'rejected': missing"


def test_mixed_formats_name_the_line(tmp_path):
    path = write_jsonl(tmp_path / "mixed.jsonl", [{"text": "a"}, {"text": "b"}, {"prompt": "p", "completion": "c"}])
    error = _error(path)
    assert (error.source, error.line) == (path, 3)
    message = str(error)
    assert message.startswith(f"{path}, line 3: is prompt_completion but the file started as language_modeling")
    assert "(line 1)" in message


def test_unknown_fields_only(tmp_path):
    path = write_jsonl(tmp_path / "odd.jsonl", [{"question": "q", "answer": "a"}])
    error = _error(path)
    assert error.line == 1 and error.field is None
    assert str(error).startswith(f"{path}, line 1: cannot tell the format from fields ['answer', 'question']")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    assert str(_error(path)) == f"{path}: no records"


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.jsonl"
    error = _error(path)
    assert (error.source, error.line, error.field) == (str(path), None, None)
    assert str(error) == f"{path}: no such file or folder"


def test_unknown_extension(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("text\nhello\n")
    assert str(_error(path)) == f"{path}: unknown file type; use .jsonl, .parquet or a datasets folder"


def test_validate_returns_the_format():
    row = Row("x.jsonl", 7, {"prompt": "q", "completion": "a"})
    assert validate(row) == PROMPT_COMPLETION
    with pytest.raises(DataError, match=r"^x.jsonl, line 7: is prompt-completion data; this method takes preference$"):
        validate(row, (PREFERENCE,))


def test_preference_mixing_strings_and_messages(tmp_path):
    path = write_jsonl(tmp_path / "pref.jsonl", [{"chosen": [user("q"), assistant("a")], "rejected": "b"}])
    error = _error(path)
    assert (error.line, error.field) == (1, "rejected")
