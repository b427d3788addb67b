"""Create the first admin user, once: credentials from env, or a generated password written to a file.

A generated password is never printed: stdout ends up in logs (container logs, CI, journald). It goes to a file
only the running user can read (mode 0600): GENERATED_ADMIN_PASSWORD_FILE, by default one file per database
(``.admin_password`` beside the checkout for `make run`'s ``db.sqlite3``, git-ignored; ``_password_file``); the
command says where, and that ``manage.py changepassword NAME`` sets another one (docs/security.md says the same).
"""

import os
import secrets
import sys
from pathlib import Path
from urllib.parse import quote

import environ
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import connections


class Command(BaseCommand):
    help = "Create a superuser if none exists (CDB_ADMIN_USER / CDB_ADMIN_PASSWORD, or a generated password)."

    def handle(self, *args, **options):
        User = get_user_model()
        existing = User.objects.filter(is_superuser=True).order_by("pk").first()
        if existing is not None:
            name = existing.get_username()
            said, stale = _saved_password_said(existing)
            line = (
                f"an admin user exists already ({name}); nothing to do. {said}"
                f"A lost password is reset with `{_manage_py()} changepassword {name}`"
            )
            self.stdout.write(self.style.WARNING(line) if stale else line)
            return
        username = os.environ.get("CDB_ADMIN_USER", "admin")
        # CDB_ADMIN_PASSWORD, or CDB_ADMIN_PASSWORD_FILE (compose's cdb_admin_password secret)
        password = environ.FileAwareEnv().str("CDB_ADMIN_PASSWORD", default="").strip()
        generated = not password
        if generated:
            password = secrets.token_urlsafe(12)
        try:
            validate_password(password, user=User(username=username))
        except ValidationError as error:
            raise CommandError(f"CDB_ADMIN_PASSWORD refused: {' '.join(error.messages)}", returncode=2) from None
        if generated:
            path = _save(password)
        User.objects.create_superuser(username=username, email="", password=password)
        reset = f"`{_manage_py()} changepassword {username}`"
        if generated:
            self.stdout.write(
                self.style.WARNING(
                    f"Created admin user '{username}'; its generated password is in {path} (readable by you only, "
                    f"never printed: `cat {path}`). Sign in with it; {reset} sets another one (then delete the file)."
                )
            )
        else:
            self.stdout.write(
                f"Created admin user '{username}' (password from CDB_ADMIN_PASSWORD); {reset} sets another one."
            )


def _manage_py() -> str:
    """How this checkout runs manage.py: through its own virtualenv (`make run`'s), else the python on the PATH."""
    venv = Path(settings.BASE_DIR) / ".venv"
    return ".venv/bin/python manage.py" if Path(sys.prefix).resolve() == venv.resolve() else "python manage.py"


def _password_file() -> Path:
    """Where a generated password goes: GENERATED_ADMIN_PASSWORD_FILE, else a file of this database's own, so that an
    admin created on another database (``DATABASE_URL=sqlite:///replay.sqlite3``) never overwrites `make run`'s:
    ``.admin_password`` beside the checkout for its own database (``db.sqlite3``, `make run`'s),
    ``<file>.admin_password`` beside any other SQLite file, ``.admin_password-<host>-<port>-<name>`` beside the
    checkout for a server database (PostgreSQL: two servers' databases of one name are two files; each part
    percent-quoted, so a name like ``a/b`` is one file name)."""
    chosen = os.environ.get("GENERATED_ADMIN_PASSWORD_FILE")
    if chosen:
        return Path(chosen)
    base = Path(settings.BASE_DIR)
    database = connections["default"].settings_dict
    name = str(database["NAME"])
    if database["ENGINE"] != "django.db.backends.sqlite3":
        server = (database.get("HOST") or "localhost", str(database.get("PORT") or 5432), name)
        return base / (".admin_password-" + "-".join(quote(part, safe="") for part in server))
    if Path(name).resolve() == (base / "db.sqlite3").resolve():
        return base / ".admin_password"
    return Path(name).with_name(f"{Path(name).name}.admin_password")


def _saved_password_said(admin) -> tuple[str, bool]:
    """What a later run says of the generated password's file: that it still holds the admin's password, or, once
    the password was changed (``changepassword``, the admin), that it is stale and to delete it. The file is not
    removed here: a person may have chosen one file for several databases (GENERATED_ADMIN_PASSWORD_FILE)."""
    path = _password_file()
    try:
        saved = path.read_text().strip()
    except FileNotFoundError:
        return "", False
    except OSError as error:
        return f"{path} cannot be read ({error.strerror}). ", False
    name = admin.get_username()
    if saved and admin.check_password(saved):
        return f"Its password is still the generated one in {path} (`cat {path}`). ", False
    return (
        f"STALE: {path} does not hold {name}'s password (it was changed since): do not use it; delete it "
        f"(`rm {path}`). ",
        True,
    )


def _save(password: str) -> Path:
    path = _password_file()
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(descriptor, 0o600)  # a file that was there keeps its mode otherwise
        with os.fdopen(descriptor, "w") as handle:
            handle.write(password + "\n")
    except OSError as error:
        raise CommandError(
            f"cannot write the generated password to {path} ({error.strerror}): set GENERATED_ADMIN_PASSWORD_FILE "
            "to a writable path, or CDB_ADMIN_PASSWORD",
            returncode=2,
        ) from None
    return path
