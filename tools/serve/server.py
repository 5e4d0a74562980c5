"""Starts `pdrop serve` on a free port for a script and stops it after: the shared part of
check_openai_client.py and load_test.py."""
import os
import re
import signal
import subprocess
import time
import urllib.request


class Server:
    def __init__(self, pdrop, model, *flags):
        self.process = subprocess.Popen(
            [pdrop, "serve", "--model", model, "--port", "0", *flags],
            stderr=subprocess.PIPE, text=True)
        self.port = None
        for line in self.process.stderr:
            match = re.search(r"listening on http://[^:]+:(\d+)", line)
            if match:
                self.port = int(match.group(1))
                break
        if self.port is None:
            raise RuntimeError(f"pdrop serve did not start (exit {self.process.wait()})")
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 300
        while True:
            try:
                with urllib.request.urlopen(self.base + "/health") as response:
                    if response.status == 200:
                        break
            except Exception:
                if self.process.poll() is not None:
                    raise RuntimeError(f"pdrop serve exited while loading ({self.process.returncode})")
                if time.time() > deadline:
                    raise RuntimeError("pdrop serve did not become ready in 300 s")
                time.sleep(0.2)

    def resident_bytes(self):
        """The server's resident memory (VmRSS), in bytes."""
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def metrics(self):
        with urllib.request.urlopen(self.base + "/metrics") as response:
            text = response.read().decode()
        return {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if line and not line.startswith("#")}

    def stop(self):
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
