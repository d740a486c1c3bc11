"""Human review of synthetic data: reading items and decisions (errors name file, line and
field; the latest decision wins; a changed item is reviewed again), the import with its
provenance (loaded by the project's own SFT and preference loaders), and the round trip in
a real headless Chromium against `rayalign review serve` run as a command (skipped where
Chromium is not installed): accept by keyboard, edit, reject, reload, import."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import write_jsonl
from rayalign.cli import main
from rayalign.data.readers import DataError
from rayalign.review.items import InvalidDecision, Review, decisions_path_for, read_items
from rayalign.review.provenance import build_dataset
from test_report import CHROMEDRIVER, CHROMIUM, CHROMIUM_FLAGS

REPO = Path(__file__).resolve().parent.parent
SCORES = {"novelty": 0.41, "quality": 0.8}


def sft_item(item_id: str, instruction: str, answer: str | None = None, **extra) -> dict:
    item = {"id": item_id, "instruction": instruction, "kept": True, "filter": None, "reason": "",
            "scores": SCORES, "confidence": 0.9, "teacher": "smollm2-135m-instruct", "origin": "generated",
            "kind": "sft", **extra}
    if answer is not None:
        item["answer"] = answer
    return item


ITEMS = [
    sft_item("q-add", "What is 3 + 4? Answer with just the number.", "7"),
    sft_item("q-capital", "What is the capital of France? Answer with one word.", "Lyon", kept=False,
             filter="quality", reason="judge: factually wrong", scores={"quality": 0.15}, confidence=0.35),
    sft_item("q-sea", "Write one short sentence about the sea.", "The sea sea sea sea.", filter="repetition",
             reason="repeats 'sea' 4 times"),
    sft_item("q-haiku", "Write a haiku about rain."),
]


def write_items(path: Path, items: list[dict]) -> Path:
    write_jsonl(path, items)
    return path


def test_item_errors_name_file_line_and_field(tmp_path):
    good = json.dumps(ITEMS[0])
    cases = {
        "bad-json": ([good, "{not json"], "line 2: not valid JSON"),
        "missing": ([good, json.dumps({"id": "x", "answer": "y"})], "line 2, field 'instruction': missing"),
        "duplicate": ([good, json.dumps(ITEMS[1]), good], "line 3, field 'id': duplicate id 'q-add' (first on line 1)"),
        "half-pair": ([json.dumps({"id": "p", "instruction": "i", "chosen": "a"})], "line 1, field 'rejected'"),
        "scores": ([json.dumps({**ITEMS[0], "scores": [0.4]})], "line 1, field 'scores'"),
    }
    for name, (lines, expected) in cases.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_text("\n".join(lines) + "\n")
        with pytest.raises(DataError) as error:
            read_items(path)
        assert str(error.value).startswith(str(path)) and expected in str(error.value), (name, str(error.value))


def test_optional_fields_may_be_absent(tmp_path):
    items = read_items(write_items(tmp_path / "items.jsonl", [
        {"id": "a", "instruction": "Say hi."},
        {"id": "b", "instruction": "Pick one.", "chosen": "x", "rejected": "y"},
    ]))
    assert [(i.kind, i.has_answer, i.texts) for i in items] == [
        ("sft", False, {"answer": ""}), ("preference", True, {"chosen": "x", "rejected": "y"})]


def test_latest_decision_wins_and_a_changed_item_is_reviewed_again(tmp_path):
    items_path = write_items(tmp_path / "items.jsonl", ITEMS)
    decisions = decisions_path_for(items_path)
    assert decisions == tmp_path / "items.decisions.jsonl"
    review = Review(items_path, decisions)
    first, second = review.items[:2]
    review.record(first, "accept", "alice")
    review.record(first, "reject", "bob", note="too easy")
    review.record(second, "edit", "alice", texts={"answer": "Paris"})
    with pytest.raises(InvalidDecision, match="no answer: write one"):
        review.record(review.items[3], "accept", "alice")
    assert len(decisions.read_text().splitlines()) == 3  # appended, nothing rewritten; the invalid one not at all

    again = Review(items_path, decisions)  # a restarted server reads the file back
    assert again.decision(again.items[0])["action"] == "reject" and again.decision(again.items[0])["reviewer"] == "bob"
    assert str(again.progress()) == "2 of 4 reviewed; 0 accepted, 1 edited, 0 written, 1 rejected"
    assert again.next_undecided() == 2

    write_items(items_path, [{**ITEMS[0], "answer": "seven"}, *ITEMS[1:]])  # regenerated since
    changed = Review(items_path, decisions)
    assert changed.status(changed.items[0]) == "changed" and changed.next_undecided() == 0
    assert str(changed.progress()) == ("1 of 4 reviewed; 0 accepted, 1 edited, 0 written, 0 rejected; "
                                       "1 changed since reviewed")


def test_import_provenance_for_generated_edited_written_and_rejected(tmp_path, tiny_model, capsys):
    from rayalign.config import DataConfig
    from rayalign.models.loading import load_tokenizer
    from rayalign.pipelines.sft import load_sft_data

    items_path = write_items(tmp_path / "items.jsonl", [*ITEMS, sft_item("q-left", "Count to three.", "1 2 3")])
    review = Review(items_path, decisions_path_for(items_path))
    add, capital, sea, haiku, _ = review.items
    review.record(add, "accept", "alice")
    review.record(capital, "edit", "alice", texts={"answer": "Paris"})
    review.record(sea, "reject", "alice", note="repetitive")
    review.record(haiku, "edit", "bob", texts={"answer": "Soft rain on the roof"})

    out = tmp_path / "sft.jsonl"
    assert main(["review", "import", str(items_path), "--out", str(out)]) == 0
    assert "1 accepted, 1 edited, 1 written, 1 rejected, 1 undecided" in capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["messages"][0]["content"], r["messages"][1]["content"], r["provenance"]["origin"]) for r in rows] == [
        (ITEMS[0]["instruction"], "7", "generated"), (ITEMS[1]["instruction"], "Paris", "edited"),
        (ITEMS[3]["instruction"], "Soft rain on the roof", "written")]
    edited = rows[1]["provenance"]
    assert edited == {"origin": "edited", "model": "smollm2-135m-instruct", "scores": {"quality": 0.15},
                      "filter": "quality", "confidence": 0.35, "reviewer": "alice",
                      "reviewed_at": edited["reviewed_at"], "item_id": "q-capital"}
    assert edited["reviewed_at"].endswith("+00:00") and rows[2]["provenance"]["reviewer"] == "bob"

    train, held_out = load_sft_data(DataConfig(train=str(out)), load_tokenizer(tiny_model), seed=0)
    assert len(train) == 3 and not held_out


def test_import_preference_rows_load_as_pairs(tmp_path, tiny_model):
    from rayalign.data.preference import load_pairs
    from rayalign.models.loading import load_tokenizer

    items_path = write_items(tmp_path / "pairs.jsonl", [
        {"id": "p1", "instruction": "Name a colour.", "input": "One word.", "chosen": "Blue", "rejected": "Bleu",
         "kind": "preference", "teacher": "judge"},
        {"id": "p2", "instruction": "Say hi.", "chosen": "Hi", "rejected": "Go away"},
        {"id": "s1", "instruction": "What is 3 + 4?", "answer": "7"},
    ])
    review = Review(items_path, decisions_path_for(items_path))
    review.record(review.items[0], "edit", "alice", texts={"chosen": "Blue", "rejected": "Green, no: Bleu"})
    review.record(review.items[1], "accept", "alice")
    review.record(review.items[2], "accept", "alice")
    with pytest.raises(DataError, match="both SFT and preference; choose one with --format"):
        build_dataset(review)
    out = tmp_path / "dpo.jsonl"
    assert main(["review", "import", str(items_path), "--format", "preference", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0]["prompt"] == [{"role": "user", "content": "Name a colour.\n\nOne word."}]
    assert rows[0]["rejected"] == [{"role": "assistant", "content": "Green, no: Bleu"}]
    assert [r["provenance"]["origin"] for r in rows] == ["edited", "generated"]
    assert len(load_pairs(str(out), load_tokenizer(tiny_model), max_length=64)) == 2


def test_import_names_the_bad_line_on_the_command_line(tmp_path, capsys):
    items_path = tmp_path / "items.jsonl"
    items_path.write_text(json.dumps(ITEMS[0]) + "\n" + json.dumps({"id": "q-add", "instruction": "again"}) + "\n")
    assert main(["review", "import", str(items_path), "--out", str(tmp_path / "out.jsonl")]) == 2
    assert f"{items_path}, line 2, field 'id': duplicate id" in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_serving(server: subprocess.Popen, url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the review server exited with {server.returncode}: {server.stdout.read()}")
        try:
            with urllib.request.urlopen(f"{url}/items", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"the review server did not answer on {url} within {timeout} s")


def test_review_round_trip_in_headless_chromium(tmp_path, capsys):
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        pytest.skip("chromium not installed: apt-get install chromium chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed: pip install selenium")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    items_path = write_items(tmp_path / "items.jsonl", ITEMS)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "rayalign.cli", "review", "serve", str(items_path), "--port", str(port),
               "--reviewer", "alice"]
    server = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ["PYTHONPATH"]])})
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1600"]:
        options.add_argument(flag)
    driver = None
    try:
        wait_until_serving(server, url)
        driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
        wait = WebDriverWait(driver, 10)

        def at_item(number: int) -> None:
            wait.until(lambda d: d.current_url == f"{url}/item/{number}")

        driver.get(url)  # lands on the first item not reviewed
        at_item(1)
        assert "quality" in driver.find_element(By.ID, "verdicts").text
        driver.find_element(By.TAG_NAME, "body").send_keys("a")  # accept by keyboard
        at_item(2)
        assert "judge: factually wrong" in driver.find_element(By.ID, "verdicts").text
        driver.find_element(By.TAG_NAME, "body").send_keys("e")  # focuses the answer box
        answer_box = driver.switch_to.active_element
        assert answer_box.get_attribute("id") == "edit-answer" and answer_box.get_attribute("value") == "Lyon"
        answer_box.clear()
        answer_box.send_keys("Paris")
        answer_box.send_keys(Keys.CONTROL, Keys.ENTER)  # saves the edit
        at_item(3)
        driver.find_element(By.ID, "note").send_keys("repetitive")
        driver.find_element(By.ID, "reject").click()
        at_item(4)  # the prompt without an answer, still to do

        driver.refresh()
        expected = "3 of 4 reviewed; 1 accepted, 1 edited, 0 written, 1 rejected"
        assert driver.find_element(By.ID, "progress").text == expected
        driver.get(f"{url}/items")
        statuses = [driver.find_element(By.CSS_SELECTOR, f"#item-{n} .status").text for n in range(1, 5)]
        assert statuses == ["accepted", "edited", "rejected", "undecided"]
        driver.get(f"{url}/item/2")
        assert driver.find_element(By.ID, "decision").text.startswith("Edited by alice at ")
        assert driver.find_element(By.ID, "edit-answer").get_attribute("value") == "Paris"
        driver.get(f"{url}/item/3")
        assert "repetitive" in driver.find_element(By.ID, "decision").text
    finally:
        if driver is not None:
            driver.quit()
        server.send_signal(signal.SIGTERM)
        try:
            said, _ = server.communicate(timeout=20)
        finally:
            server.kill()
    assert server.returncode == 0 and "[review] stopped" in said, said

    out = tmp_path / "reviewed.jsonl"
    assert main(["review", "import", str(items_path), "--out", str(out)]) == 0
    assert "1 accepted, 1 edited, 0 written, 1 rejected, 1 undecided" in capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["messages"][1]["content"], r["provenance"]["origin"], r["provenance"]["item_id"]) for r in rows] == [
        ("7", "generated", "q-add"), ("Paris", "edited", "q-capital")]
    assert all(r["provenance"]["reviewer"] == "alice" and r["provenance"]["reviewed_at"] for r in rows)
    card = (tmp_path / "reviewed.card.md").read_text()
    assert "origin: generated 1, edited 1" in card and "reviewers: alice 2" in card and "1 rejected" in card
