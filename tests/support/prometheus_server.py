"""A throwaway Prometheus server (the Debian ``prometheus`` binary that ``scripts/setup`` installs).

It scrapes the given loopback targets as job ``tenantsvc`` (the job name deploy/prometheus's rules select),
loads deploy/prometheus's recording and alert rules, keeps its TSDB in a temp directory and listens on a free
loopback port. Queries go through its HTTP API with urllib; every wait is bounded.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Sequence

from tests.support.processes import free_port, remove_dir, wait_until

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULE_FILES = ("recording.yml", "alerts.yml")
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


class PrometheusServer:
    """One ``prometheus`` process scraping ``targets`` (``host:port``) every ``scrape_interval_s``."""

    def __init__(self, targets: Sequence[str], *, scrape_interval_s: float, evaluation_interval_s: float = 1.0):
        binary = shutil.which("prometheus")
        assert binary is not None, "prometheus not found: run scripts/setup (it installs the prometheus package)"
        self.directory = tempfile.mkdtemp(prefix="tenantsvc-prometheus-")
        config = {
            "global": {"scrape_interval": f"{scrape_interval_s:g}s", "evaluation_interval": f"{evaluation_interval_s:g}s"},
            "rule_files": [str(RULES_DIR / name) for name in RULE_FILES],
            "scrape_configs": [{"job_name": "tenantsvc", "static_configs": [{"targets": list(targets)}]}],
        }
        config_path = Path(self.directory) / "prometheus.yml"
        config_path.write_text(json.dumps(config))  # JSON is YAML
        self.port = free_port()
        self._log = open(Path(self.directory) / "prometheus.log", "wb")
        self._process = subprocess.Popen(
            [binary, f"--config.file={config_path}", f"--storage.tsdb.path={self.directory}/data",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self._log, stderr=subprocess.STDOUT)
        wait_until(self._ready, "Prometheus to be ready", timeout_s=READY_TIMEOUT_S)

    def _ready(self) -> bool:
        assert self._process.poll() is None, f"prometheus exited: {self.log()}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    def api(self, path: str, **params: str) -> Any:
        """``GET /api/v1/<path>?params`` and return its ``data`` (asserting ``status == success``)."""
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v1/{path}?{query}", timeout=10) as answer:
            body = json.loads(answer.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expression: str) -> list[dict[str, Any]]:
        """The instant vector ``expression`` evaluates to now."""
        return self.api("query", query=expression)["result"]

    def scrapes(self) -> int:
        """How many scrapes of the tenantsvc job Prometheus has stored so far (all targets)."""
        result = self.query('sum(count_over_time(up{job="tenantsvc"}[1h]))')
        return int(float(result[0]["value"][1])) if result else 0

    def log(self) -> str:
        """What the server wrote so far (for failure messages)."""
        self._log.flush()
        return (Path(self.directory) / "prometheus.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """Stop the server and delete its directory."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(STOP_TIMEOUT_S)
        self._log.close()
        remove_dir(self.directory)
