"""The container image, built and run for real: deploy/check_image.sh builds deploy/Dockerfile, then runs these.

Environment: MOODBOT_TEST_IMAGE (the image; without it these skip), MOODBOT_TEST_GGUF (the SmolLM2 GGUF, mounted
read-only as the model) and MOODBOT_TEST_BUILD_SECRET (the CA bundle the build got as a secret, if any).
Containers use the host's network to reach the fake Bot API on 127.0.0.1; each test has its own data volume.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import re
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from engine.kernels import native
from tests.support.fakebotapi import TEST_TOKEN, FakeBotApi

IMAGE = os.environ.get("MOODBOT_TEST_IMAGE", "")
GGUF = os.environ.get("MOODBOT_TEST_GGUF", "")
BUILD_SECRET = os.environ.get("MOODBOT_TEST_BUILD_SECRET", "")
MODEL_IN_CONTAINER = "/models/test.gguf"

pytestmark = pytest.mark.skipif(not IMAGE, reason="needs a built image: deploy/check_image.sh builds one, runs these")


def docker(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI; the result holds stdout and stderr together."""
    return subprocess.run(
        ["docker", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=timeout, check=False,
    )


@pytest.fixture
def volume() -> Iterator[str]:
    """A fresh named volume for /data, removed afterwards."""
    name = f"moodbot-test-{uuid.uuid4().hex[:12]}"
    assert docker("volume", "create", name).returncode == 0
    yield name
    docker("volume", "rm", "-f", name)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config for the container: the mounted test model, the database in the volume."""
    path = tmp_path / "config.toml"
    path.write_text(
        # calibrate = false: start-up calibration is the engine's business, and here only slows every start.
        f'[engine]\nmodel = "{MODEL_IN_CONTAINER}"\nmax_new_tokens = 12\ncalibrate = false\n'
        '[storage]\npath = "/data/moodbot.db"\n',
        encoding="utf-8",
    )
    return path


def with_bot_api(config: Path, api: FakeBotApi) -> Path:
    """``config`` with Telegram pointed at the fake Bot API."""
    config.write_text(f'[telegram]\nbase_url = "{api.base_url}"\n' + config.read_text(encoding="utf-8"))
    return config


def run_args(config: Path, volume: str, *extra: str) -> list[str]:
    """`docker run` options shared by every moodbot container here (the image's own user and entrypoint)."""
    return [
        "--network", "host", "-e", f"MOODBOT_TELEGRAM_TOKEN={TEST_TOKEN}", "-e", "HF_HUB_OFFLINE=1",
        "-v", f"{volume}:/data", "-v", f"{GGUF}:{MODEL_IN_CONTAINER}:ro",
        "-v", f"{config}:/etc/moodbot/config.toml:ro", *extra, IMAGE,
    ]


async def docker_async(*args: str, timeout: float = 300) -> tuple[int, str]:
    """The docker CLI without blocking the event loop (the fake Bot API serves from it meanwhile)."""
    process = await asyncio.create_subprocess_exec(
        "docker", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, output.decode()


def in_volume(volume: str, *command: str, read_only: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in the image with only the data volume mounted (no moodbot, no model)."""
    mount = f"{volume}:/data:ro" if read_only else f"{volume}:/data"
    return docker("run", "--rm", "-v", mount, "--entrypoint", command[0], IMAGE, *command[1:])


def modes_in_volume(volume: str) -> dict[str, str]:
    """``{path: "mode owner"}`` for /data and everything in it."""
    listing = in_volume(volume, "find", "/data", "-printf", "%p %m %u\n")
    assert listing.returncode == 0, listing.stdout
    return {path: rest for path, rest in (line.split(" ", 1) for line in listing.stdout.splitlines())}


def test_image_metadata_user_labels_healthcheck_and_volumes() -> None:
    inspected = docker("image", "inspect", IMAGE)
    assert inspected.returncode == 0, inspected.stdout
    config = json.loads(inspected.stdout)[0]["Config"]

    assert config["User"] == "moodbot"
    assert config["Healthcheck"]["Test"] == ["CMD", "moodbot-healthcheck"]
    assert set(config["Volumes"]) == {"/data", "/models"}
    labels = config["Labels"]
    for key in ("title", "description", "licenses", "version", "revision", "created", "base.name"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    ids = docker("run", "--rm", "--entrypoint", "id", IMAGE)
    assert ids.stdout.startswith("uid=10001(moodbot) gid=10001(moodbot)"), ids.stdout


async def test_doctor_passes_and_puts_an_owner_only_database_in_the_volume(config: Path, volume: str) -> None:
    async with FakeBotApi() as api:
        code, output = await docker_async("run", "--rm", *run_args(with_bot_api(config, api), volume), "doctor")

    assert code == 0, output
    assert re.findall(r"^(ok |FAIL) (\w+):", output, re.M) == [
        ("ok ", "config"), ("ok ", "token"), ("ok ", "database"), ("ok ", "model")
    ], output
    assert TEST_TOKEN not in output
    if native.wanted():  # AVX2 without VNNI: the kernel built with the image, so the container needs no compiler
        assert re.search(r"^ok  int8 kernel: AVX2 \(/opt/venv/\S+/engine/kernels/prebuilt/avx2_int8-\w+\.so\)$",
                         output, re.M), output
    modes = modes_in_volume(volume)
    assert modes["/data"] == "700 moodbot"
    assert modes["/data/moodbot.db"] == "600 moodbot"
    assert set(modes.values()) == {"700 moodbot", "600 moodbot"}, modes


def test_classify_prints_a_label_and_a_score(config: Path, volume: str) -> None:
    result = docker("run", "--rm", *run_args(config, volume), "classify", "what a lovely, sunny day")

    assert result.returncode == 0, result.stdout
    assert re.fullmatch(r"(positive|neutral|negative) [+-]\d\.\d{3}", result.stdout.strip().splitlines()[-1]), (
        result.stdout
    )


async def test_run_answers_stores_in_the_volume_turns_healthy_and_stops_cleanly(config: Path, volume: str) -> None:
    name = f"moodbot-test-{uuid.uuid4().hex[:12]}"
    async with FakeBotApi() as api:
        # The image's HEALTHCHECK, polled every second instead of every minute.
        health = ["--health-interval", "1s", "--health-start-period", "0s", "--health-retries", "1000"]
        code, output = await docker_async("run", "-d", "--name", name, *run_args(with_bot_api(config, api), volume,
                                                                                   *health))
        assert code == 0, output
        try:
            alice = api.user(42, "Alice")
            api.send_text(api.private_chat(alice), alice, "hello from the container")
            try:
                await api.wait_for(
                    lambda a: (t := a.sent_texts(42)) and not t[-1].endswith(" …") and a.calls_of("sendMessageDraft"),
                    timeout=600,  # a loaded CI machine may take minutes to start torch and load the model
                )
            except TimeoutError:
                raise AssertionError(docker("logs", name).stdout) from None
            status = ""
            for _ in range(60):
                status = docker("inspect", "-f", "{{.State.Health.Status}}", name).stdout.strip()
                if status == "healthy":
                    break
                await asyncio.sleep(1)
            assert status == "healthy", docker("inspect", "-f", "{{json .State.Health}}", name).stdout
            code, output = await docker_async("stop", "-t", "60", name)  # SIGTERM: moodbot's graceful stop
            assert code == 0, output
            state = json.loads(docker("inspect", "-f", "{{json .State}}", name).stdout)
            logs = docker("logs", name).stdout
        finally:
            docker("rm", "-f", "-v", name)  # -v: and its anonymous /models volume

    assert state["ExitCode"] == 0, logs
    assert TEST_TOKEN not in logs
    stored = in_volume(volume, "python", "-c", "import sqlite3; db = sqlite3.connect('file:/data/moodbot.db?mode=ro',"
                       " uri=True); print(*db.execute('SELECT role FROM messages ORDER BY id'))")
    assert stored.stdout.split() == ["('user',)", "('assistant',)"], stored.stdout
    assert set(modes_in_volume(volume).values()) == {"700 moodbot", "600 moodbot"}


CREATE_DATABASE = """
import asyncio
from storage import Store

async def create() -> None:
    await (await Store.open("/data/moodbot.db")).close()

asyncio.run(create())
"""


def test_healthcheck_reports_a_missing_or_read_only_database(volume: str) -> None:
    missing = in_volume(volume, "moodbot-healthcheck")
    assert missing.returncode == 1 and "does not exist" in missing.stdout, missing.stdout
    created = in_volume(volume, "python", "-c", CREATE_DATABASE)  # as moodbot opens it, without loading a model
    assert created.returncode == 0, created.stdout

    writable = in_volume(volume, "moodbot-healthcheck")
    read_only_volume = in_volume(volume, "moodbot-healthcheck", read_only=True)
    read_only_file = in_volume(volume, "sh", "-c", "chmod 0400 /data/moodbot.db && moodbot-healthcheck")

    assert writable.returncode == 0, writable.stdout
    # A WAL database in a read-only folder doesn't even open (no -shm file can be made).
    assert read_only_volume.returncode == 1, read_only_volume.stdout
    assert read_only_volume.stdout.startswith("unhealthy: /data/moodbot.db: "), read_only_volume.stdout
    # A read-only file opens, and takes the write lock: only the probe write fails.
    assert read_only_file.returncode == 1, read_only_file.stdout
    assert "attempt to write a readonly database" in read_only_file.stdout, read_only_file.stdout


PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\s.+?-----END CERTIFICATE-----", re.S)


def certificates(text: bytes) -> set[bytes]:
    """The PEM certificates in ``text``, whitespace removed."""
    return {b"".join(block.split()) for block in PEM.findall(text)}


def private_certificates(bundle: Path) -> set[bytes]:
    """The certificates of ``bundle`` no public CA store ships (certifi's; Debian's where this host has it):
    a TLS-inspecting proxy's own CA, the part of a build secret that must never reach an image."""
    import certifi

    public = certificates(Path(certifi.where()).read_bytes())
    for path in glob.glob("/usr/share/ca-certificates/mozilla/*.crt"):
        public |= certificates(Path(path).read_bytes())
    return certificates(bundle.read_bytes()) - public


def layer_files(saved: IO[bytes]) -> Iterator[tuple[str, bytes]]:
    """(path, content) of every regular file in every layer of a `docker save` stream (legacy or OCI layout)."""
    with tarfile.open(fileobj=saved, mode="r|") as image:
        for member in image:
            if not member.isfile():
                continue
            try:
                layer = tarfile.open(fileobj=image.extractfile(member), mode="r|")  # noqa: SIM115 (with below)
            except tarfile.ReadError:
                continue  # manifests and configs
            with layer:
                for file in layer:
                    if file.isfile():
                        data = layer.extractfile(file)
                        yield file.name, data.read() if data else b""


@pytest.mark.skipif(not BUILD_SECRET, reason="the build had no secret")
def test_no_layer_holds_the_build_secret() -> None:
    secret = Path(BUILD_SECRET)
    whole = b"".join(secret.read_bytes().split())
    private = private_certificates(secret)
    process = subprocess.Popen(["docker", "save", IMAGE], stdout=subprocess.PIPE)
    assert process.stdout is not None
    found, files = [], 0
    for path, content in layer_files(process.stdout):
        files += 1
        flat = b"".join(content.split()) if b"-----BEGIN CERTIFICATE-----" in content else b""
        if flat and (flat == whole or any(certificate in flat for certificate in private)):
            found.append(path)
    assert process.wait() == 0

    assert files > 1000  # the layers were really read
    assert not found, f"the build secret is in {found}"
