"""Make sure the `admin` superuser exists and say how to log in.

The password comes from OCTOPUS_ADMIN_PASSWORD; otherwise one is generated, printed once,
and kept in var/admin_password (mode 600) for the next time you need it.
"""

from __future__ import annotations

import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the admin superuser if missing (password: OCTOPUS_ADMIN_PASSWORD or generated)."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username: str, **options):
        User = get_user_model()
        given = os.environ.get("OCTOPUS_ADMIN_PASSWORD", "")
        kept = settings.VAR_DIR / "admin_password"
        user = User.objects.filter(username=username).first()
        if user is None:
            password = given or secrets.token_urlsafe(12)
            User.objects.create_superuser(username=username, email="", password=password)
            if given:
                self.stdout.write(f"Created superuser {username!r} with OCTOPUS_ADMIN_PASSWORD.")
            else:
                settings.VAR_DIR.mkdir(exist_ok=True)
                kept.write_text(password + "\n")
                kept.chmod(0o600)
                self.stdout.write(
                    self.style.WARNING(
                        f"Created superuser {username!r} with password: {password}\n"
                        f"(shown once; also kept in {kept})"
                    )
                )
            return
        if given and not user.check_password(given):
            user.set_password(given)
            user.save(update_fields=["password"])
            self.stdout.write(f"Superuser {username!r}: password set from OCTOPUS_ADMIN_PASSWORD.")
        elif given:
            self.stdout.write(
                f"Superuser {username!r} exists (password from OCTOPUS_ADMIN_PASSWORD)."
            )
        else:
            where = f"kept in {kept}" if kept.exists() else "unchanged"
            self.stdout.write(f"Superuser {username!r} exists; its password is {where}.")
