"""A fake Kubernetes API server on loopback that serves the few TrainJob endpoints train_model uses.

A stand-in for a cluster with Kubeflow Trainer, which cannot exist here. It accepts a TrainJob only
if the Trainer API's models parse it, and its "controller" runs the job for real: one process per
node running the TrainJob's command, with the ``PET_*`` environment the ``torch-distributed``
runtime gives torchrun (node count, processes per node, node rank, a loopback rendezvous). The job
becomes Complete when every node exits 0, Failed otherwise. ``hold=True`` never starts the nodes
(a job stuck in scheduling). Volumes are not mounted: the nodes share this machine's file system.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATH = re.compile(r"^/apis/trainer\.kubeflow\.org/v1alpha1/namespaces/([^/]+)/trainjobs(?:/([^/?]+))?")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _condition(kind: str, message: str) -> dict:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"type": kind, "status": "True", "reason": kind, "message": message, "lastTransitionTime": now}


class FakeTrainerApi:
    """Serves ``/apis/trainer.kubeflow.org/v1alpha1/namespaces/NS/trainjobs[/NAME]``: POST, GET, DELETE."""

    def __init__(self, hold: bool = False):
        self.hold = hold
        self.jobs: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []
        self.processes: dict[str, list[subprocess.Popen]] = {}
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method: str):
                api.requests.append((method, self.path))
                match = PATH.match(self.path)
                if not match:
                    self._send(404, {"kind": "Status", "code": 404})
                    return None
                return match.group(1), match.group(2)

            def do_POST(self):  # noqa: N802 - http.server's naming
                route = self._route("POST")
                if route is None:
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob

                TrainerV1alpha1TrainJob.from_dict(body)  # raises on anything the Trainer's schema rejects
                name = body["metadata"]["name"]
                body["metadata"]["namespace"] = route[0]
                body["status"] = {"conditions": []}
                api.jobs[name] = body
                if not api.hold:
                    threading.Thread(target=api._run, args=(name,), daemon=True).start()
                self._send(201, body)

            def do_GET(self):  # noqa: N802
                route = self._route("GET")
                if route is None:
                    return
                job = api.jobs.get(route[1])
                self._send(200, job) if job else self._send(404, {"kind": "Status", "code": 404})

            def do_DELETE(self):  # noqa: N802
                route = self._route("DELETE")
                if route is None:
                    return
                job = api.jobs.pop(route[1], None)
                for process in api.processes.pop(route[1], []):
                    process.kill()
                self._send(200 if job else 404, {"kind": "Status", "status": "Success" if job else "Failure"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _run(self, name: str) -> None:
        job = self.jobs[name]
        trainer = job["spec"]["trainer"]
        nodes, per_node, port = trainer["numNodes"], trainer["numProcPerNode"], _free_port()
        processes = []
        for node_rank in range(nodes):
            env = {
                **os.environ,
                **{e["name"]: e["value"] for e in trainer.get("env", [])},
                "PET_NNODES": str(nodes),
                "PET_NPROC_PER_NODE": str(per_node),
                "PET_NODE_RANK": str(node_rank),
                "PET_MASTER_ADDR": "127.0.0.1",
                "PET_MASTER_PORT": str(port),
            }
            command = trainer["command"]
            if command[0] == "torchrun":  # this interpreter's torchrun (a copied venv's script may point elsewhere)
                command = [sys.executable, "-m", "torch.distributed.run", *command[1:]]
            processes.append(subprocess.Popen(command, env=env))
        self.processes[name] = processes
        job["status"]["conditions"].append(_condition("Running", f"{nodes} nodes started"))
        codes = [process.wait() for process in processes]
        if all(code == 0 for code in codes):
            job["status"]["conditions"].append(_condition("Complete", "TrainJob completed"))
        else:
            job["status"]["conditions"].append(_condition("Failed", f"nodes exited with {codes}"))

    def close(self) -> None:
        for processes in self.processes.values():
            for process in processes:
                process.kill()
        self.server.shutdown()

    def api_client(self):
        """A Kubernetes ``ApiClient`` pointed at this server."""
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.url
        return client.ApiClient(configuration)
