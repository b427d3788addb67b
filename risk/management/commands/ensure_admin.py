"""Create the first admin user, once: credentials from env or generated and printed one time."""

import os
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create a superuser if none exists (CDB_ADMIN_USER / CDB_ADMIN_PASSWORD, or a generated password)."

    def handle(self, *args, **options):
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write("an admin user exists already; nothing to do")
            return
        username = os.environ.get("CDB_ADMIN_USER", "admin")
        password = os.environ.get("CDB_ADMIN_PASSWORD")
        generated = not password
        if generated:
            password = secrets.token_urlsafe(12)
        try:
            validate_password(password, user=User(username=username))
        except ValidationError as error:
            raise CommandError(f"CDB_ADMIN_PASSWORD refused: {' '.join(error.messages)}", returncode=2) from None
        User.objects.create_superuser(username=username, email="", password=password)
        if generated:
            self.stdout.write(
                self.style.WARNING(
                    f"Created admin user '{username}' with password: {password}\n"
                    "This is shown only once. Log in at /admin/ and change it."
                )
            )
        else:
            self.stdout.write(f"Created admin user '{username}' (password from CDB_ADMIN_PASSWORD)")
