"""A password change signs the user out of the API everywhere: sessions and API keys.

Django calls ``password_changed(password, user)`` on every entry of ``AUTH_PASSWORD_VALIDATORS``
right after a user's new password is saved (``AbstractBaseUser.save`` after ``set_password``):
the admin's password change form, ``manage.py changepassword``, Django's password change and
reset views, and any future API endpoint that sets a password the usual way. That documented
hook is where QuickBG revokes the user's refresh tokens and API keys; it adds no rule on the
password itself. (A password written with a raw ``QuerySet.update`` bypasses it, as it bypasses
every validator.)

Why the keys too: a password is changed after it leaked, and whoever had it could sign in and
create keys that would outlive the change. So a new password starts from no credentials at all;
scripts get new keys (``POST /api/v1/api-keys``). Documented in the README's API keys section.
"""

from __future__ import annotations

from accounts.services import api_keys_revoke_all, user_revoke_refresh_tokens


class RevokeTokensOnPasswordChange:
    def validate(self, password, user=None) -> None:
        return None

    def password_changed(self, password, user=None) -> None:
        if user is not None and user.pk is not None:
            user_revoke_refresh_tokens(user=user)
            api_keys_revoke_all(user=user)

    def get_help_text(self) -> str:
        return ("Changing the password signs this account out of the API on every device and "
                "revokes its API keys.")
