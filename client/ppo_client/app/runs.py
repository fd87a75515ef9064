"""Optimization runs started from the app: the same run folders and reports as `ppo-client optimize`,
worked on in a background thread; their state is read back from the folder, so a run started in an
earlier session (or by the CLI in the same folder) shows the same way and can be resumed."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

from ppo_client.checks import shown
from ppo_client.errors import InvalidRequestError, OptimizationError, PPOError
from ppo_client.optimize import session
from ppo_client.optimize.config import RunConfig
from ppo_client.optimize.folder import CONFIG, SUMMARY, finished, read_records
from ppo_client.scoring import ScoringClient
from ppo_client.store import UserStore

logger = logging.getLogger(__name__)
RUN_ID = re.compile(r"[A-Za-z0-9._-]{1,120}")
APP_RUN = RunConfig(iterations=6)
"""What a run started from the app gets for the fields its request leaves out: the CLI's default
arm (``RunConfig``), in fewer iterations, so a person watching it sees it finish."""


class _Stopped(Exception):
    """Raised in a run's thread after an iteration, once the app is stopping."""


class RunManager:
    def __init__(self, store_path: str | Path, url: str | None, runs_dir: Path, chat_config) -> None:
        self.store_path, self.url, self.runs_dir, self.chat_config = store_path, url, Path(runs_dir), chat_config
        self._threads: dict[str, threading.Thread] = {}
        self._errors: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def stop(self, timeout_s: float = 180.0) -> list[str]:
        """Stop every run this app works on after the iteration it is in (saved, so the run resumes),
        and wait for their threads, which stop the local LLM servers they started: a run thread
        killed with the process would leave its LLM server behind. The ids still running after
        ``timeout_s``."""
        self._stopping.set()
        deadline = time.monotonic() + timeout_s
        with self._lock:
            threads = dict(self._threads)
        for thread in threads.values():
            thread.join(max(deadline - time.monotonic(), 0.0))
        return [run_id for run_id, thread in threads.items() if thread.is_alive()]

    def active(self) -> list[str]:
        """The ids of the runs this app is working on now."""
        with self._lock:
            return [run_id for run_id, thread in self._threads.items() if thread.is_alive()]

    def _stop_if_asked(self, record=None) -> None:
        if self._stopping.is_set():
            raise _Stopped

    def folder(self, run_id: str) -> Path:
        """The run's folder; an id that is not a plain folder name (no path) is refused."""
        if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id) or run_id in (".", ".."):
            raise InvalidRequestError("run", f"{shown(run_id)} is not a run id")
        folder = self.runs_dir / run_id
        if not (folder / "config.json").exists():
            raise OptimizationError(f"no run {run_id!r}")
        return folder

    def start(self, config: RunConfig) -> str:
        """Check and create the run now (errors reach the caller), then work on it in the background."""
        config = config.checked()
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", config.user)[:40]
        run_id = f"{slug}-{time.strftime('%Y%m%d-%H%M%S')}-{int(time.time() * 1000) % 1000:03d}"
        client = ScoringClient(self.url)
        try:
            with UserStore(self.store_path) as store:
                store.user(config.user)
                scorer = session.user_scorer(store, client, config.user)
            context = session.check_context(config.context, self.chat_config, text_fallback=True)
            state = session.new_run(self.runs_dir / run_id, dataclasses.replace(config, context=context), scorer, client,
                                    self.chat_config)
        except BaseException:
            client.close()
            raise
        thread = threading.Thread(target=self._work, args=(run_id, state, client), daemon=True, name=run_id)
        with self._lock:
            self._threads[run_id] = thread
        thread.start()
        return run_id

    def resume(self, run_id: str) -> None:
        folder = self.folder(run_id)
        if self.running(run_id):
            return
        state = session.resume_run(folder)  # refuses a run another process holds
        thread = threading.Thread(target=self._work, args=(run_id, state, ScoringClient(self.url)), daemon=True)
        with self._lock:
            self._threads[run_id] = thread
            self._errors.pop(run_id, None)
        thread.start()

    def _work(self, run_id: str, state, client) -> None:
        try:
            self._stop_if_asked()
            with session.chat_endpoint(self.chat_config, needed=session.needs_llm(state)) as chat:
                session.execute(state, client, chat, on_iteration=self._stop_if_asked)
        except _Stopped:
            logger.info("run %s stopped with the app; it resumes from its folder", run_id)
        except PPOError as exc:
            self._errors[run_id] = str(exc)
        except Exception as exc:  # a background thread: whatever stopped it is shown with the run
            logger.exception("run %s stopped", run_id)
            self._errors[run_id] = f"{type(exc).__name__}: {exc}"
        finally:
            state.close()
            client.close()

    def running(self, run_id: str) -> bool:
        thread = self._threads.get(run_id)
        return thread is not None and thread.is_alive()

    def status(self, run_id: str) -> dict:
        """What the run folder holds so far, with whether this app is working on it."""
        folder = self.folder(run_id)
        config = json.loads((folder / CONFIG).read_text())["config"]
        records = read_records(folder)
        iterations: list[dict[str, Any]] = []
        for record in records:
            best = record.best
            iterations.append({"iteration": record.iteration, "best_prompt": best.prompt, "best_score": best.score,
                               "best_image": f"{run_id}/{best.best_image}"})
        summary = json.loads((folder / SUMMARY).read_text()) if (folder / SUMMARY).exists() else {}
        done = finished(config, records)
        state = "running" if self.running(run_id) else "finished" if done else "failed" if run_id in self._errors else "stopped"
        top = max(iterations, key=lambda i: i["best_score"]) if iterations else None
        return {
            "id": run_id, "user": config["user"], "prompt": config["prompt"], "optimizer": config["optimizer"],
            "status": state, "error": self._errors.get(run_id, ""), "iterations_total": config["iterations"] + 1,
            "iterations": iterations, "best_prompt": top["best_prompt"] if top else None,
            "best_score": top["best_score"] if top else None, "init_score": summary.get("init"),
        }

    def list(self, user: str) -> list[str]:
        """The user's runs in this app's runs folder, newest first."""
        if not self.runs_dir.exists():
            return []
        runs = []
        for folder in self.runs_dir.iterdir():
            try:
                if json.loads((folder / "config.json").read_text())["config"]["user"] == user:
                    runs.append(folder.name)
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return sorted(runs, reverse=True)
