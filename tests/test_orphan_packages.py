"""Orphan package files: a registration killed between writing its package and committing its
row leaves a file no version refers to; `prune_orphan_packages` finds and removes such files
(local storage and S3), and an interrupted registration that can clean up does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from io import StringIO
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.core.management import call_command
from django.db import connection

from chatmodels.models import ModelVersion
from tests.helpers import register
from tests.live import deployment, moto_s3
from tests.sample_models import TriggerModel

REPOSITORY = Path(__file__).resolve().parent.parent
DAY = 24 * 3600


@pytest.fixture
def package_dir(settings, tmp_path) -> Path:
    """This test's own package storage folder (nothing else's files to find)."""
    folder = tmp_path / "packages"
    settings.STORAGES = {
        **settings.STORAGES,
        "packages": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(folder)},
        },
    }
    return folder


def files_in(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def prune(*args: str) -> str:
    out = StringIO()
    call_command("prune_orphan_packages", *args, stdout=out)
    return out.getvalue()


def _age(folder: Path, name: str, seconds: int) -> None:
    then = time.time() - seconds
    os.utime(folder / name, (then, then))


@pytest.mark.django_db
def test_prune_removes_only_unreferenced_files_past_the_grace_period(package_dir):
    version = register(name="echo", model=TriggerModel())
    storage = storages["packages"]
    old_orphan = storage.save("packages/echo/old-orphan.zip", ContentFile(b"x" * 10))
    young_orphan = storage.save("packages/other/young-orphan.zip", ContentFile(b"y"))
    _age(package_dir, old_orphan, 2 * 3600)
    _age(package_dir, version.package.name, 2 * 3600)  # referenced: kept, however old
    before = files_in(package_dir)

    listed = prune("--dry-run")

    first, summary = listed.splitlines()
    assert first.startswith(f"Would remove {old_orphan} (10 bytes, written ")
    assert summary == "Would remove 1 orphan package file (10 bytes) older than 3600 s."
    assert files_in(package_dir) == before

    assert prune().splitlines()[-1] == (
        "Removed 1 orphan package file (10 bytes) older than 3600 s."
    )
    assert files_in(package_dir) == {version.package.name, young_orphan}

    # A shorter grace period reaches the young file; the referenced one stays whatever happens.
    assert prune("--older-than", "0").splitlines()[-1].startswith("Removed 1 orphan package file")
    assert files_in(package_dir) == {version.package.name}
    assert ModelVersion.objects.get().package.name == version.package.name


@pytest.mark.django_db
def test_prune_with_no_package_folder_finds_nothing(package_dir):
    assert prune() == "Removed 0 orphan package files (0 bytes) older than 3600 s.\n"


@pytest.mark.django_db
def test_prune_refuses_a_negative_grace_period(package_dir):
    with pytest.raises(Exception, match="--older-than is a number of seconds >= 0"):
        prune("--older-than", "-5")


# --- interrupted registrations, in real processes ----------------------------------------------

# Registers through the real command in a process of its own, on the test database and a given
# package folder, and stops between the package write and the commit (where a kill hurts).
_REGISTER_AND_STOP_BEFORE_COMMIT = textwrap.dedent(
    """
    import sys, time
    from django.conf import settings
    settings.STORAGES["packages"]["OPTIONS"]["location"] = sys.argv[1]
    import django
    django.setup()
    from django.core.management import call_command
    from chatmodels import services

    def stop_before_commit(**kwargs):
        print("written", kwargs["stored_name"], flush=True)
        time.sleep(120)

    services._create_version_rows = stop_before_commit
    call_command("register_model", "orphaned", "tests.sample_models:TriggerModel")
    """
)


def _registration_stopped_before_commit(package_dir: Path) -> tuple[subprocess.Popen, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings_test",
        "CHATMODELS_TEST_DATABASE_NAME": connection.settings_dict["NAME"],
    }
    process = subprocess.Popen(
        [sys.executable, "-c", _REGISTER_AND_STOP_BEFORE_COMMIT, str(package_dir)],
        cwd=REPOSITORY,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline()  # EOF ("") if the process died first
    if not line.startswith("written "):
        process.kill()
        raise AssertionError(f"no package written: {line!r} {process.communicate()[1][-2000:]}")
    return process, line.split(" ", 1)[1].strip()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_registration_killed_before_its_commit_leaves_an_orphan_that_prune_removes(
    package_dir,
):
    process, stored_name = _registration_stopped_before_commit(package_dir)
    assert files_in(package_dir) == {stored_name}

    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)

    assert process.returncode == -signal.SIGKILL
    assert files_in(package_dir) == {stored_name}  # the orphan: a file, no row
    assert not ModelVersion.objects.exists()
    # Young: it could be a registration in flight, so the default grace period keeps it.
    assert prune().startswith("Removed 0 orphan package files")
    assert stored_name in prune("--dry-run", "--older-than", "0")
    assert files_in(package_dir) == {stored_name}

    prune("--older-than", "0")

    assert files_in(package_dir) == set()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGHUP])
def test_a_registration_terminated_before_its_commit_removes_its_package(
    package_dir, signal_number
):
    process, stored_name = _registration_stopped_before_commit(package_dir)
    assert files_in(package_dir) == {stored_name}

    process.send_signal(signal_number)
    _out, err = process.communicate(timeout=30)

    assert process.returncode == 128 + signal_number, err
    assert "Traceback" not in err
    assert files_in(package_dir) == set()
    assert not ModelVersion.objects.exists()


# --- S3 ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_prune_finds_and_removes_orphans_in_s3(tmp_path):
    with moto_s3(tmp_path) as s3, deployment(tmp_path, s3=s3) as installation:
        installation.manage("register_model", "echo", "tests.sample_models:TriggerModel")
        (registered,) = s3.keys()
        orphan = "chatmodels/packages/echo/0123-orphan.zip"
        s3.write(orphan, b"left by a killed registration")
        s3.write("elsewhere/not-a-package.zip", b"outside the package folder")

        kept = installation.manage("prune_orphan_packages").stdout
        listed = installation.manage("prune_orphan_packages", "--dry-run", "--older-than", "0")

        assert kept.startswith("Removed 0 orphan package files")  # young: kept
        assert listed.stdout.splitlines()[0].startswith(
            "Would remove packages/echo/0123-orphan.zip (29 bytes, written "
        )
        assert set(s3.keys()) == {registered, orphan, "elsewhere/not-a-package.zip"}

        removed = installation.manage("prune_orphan_packages", "--older-than", "0").stdout

        assert removed.splitlines()[-1] == (
            "Removed 1 orphan package file (29 bytes) older than 0 s."
        )
        assert set(s3.keys()) == {registered, "elsewhere/not-a-package.zip"}
