"""The fine-tuning job runner as a Serve deployment of one replica: rayalign.finetune.runner's
`step()` every `finetune.poll_s` seconds, on a thread of its own.

Everything it knows is in the service's database, so Serve restarting the replica, or the
whole application being redeployed, loses nothing: the new replica carries on with every
unfinished job (a Ray job keeps running meanwhile). Serve's health check restarts a replica
whose loop died.
"""

from __future__ import annotations

import logging
import threading

from rayalign.finetune.runner import Runner
from rayalign.serving.finetune_api import service
from rayalign.serving.settings import FineTuneSettings

logger = logging.getLogger("ray.serve")


class FineTuneRunner:
    def __init__(self, settings: dict, bases: dict[str, str]):
        finetune = FineTuneSettings.model_validate(settings)
        self.poll_s = finetune.poll_s
        self.runner = Runner(service(finetune, bases).store, finetune, bases)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="finetune-runner", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopping.wait(self.poll_s):
            try:
                self.runner.step()
            except Exception:  # the database unreachable for a moment: the next pass retries
                logger.exception("fine-tuning runner: a pass failed")

    def check_health(self) -> None:
        if not self._thread.is_alive():
            raise RuntimeError("the fine-tuning runner's loop has stopped")

    def __del__(self):
        self._stopping.set()
