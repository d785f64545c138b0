"""Settings every test process shares, set before any Settings object is built."""

from __future__ import annotations

import os

# vkusvill_bot's plan accepts raw Telegram ids, so workers and gateways need the HMAC key that
# pseudonymizes them (streams.privacy); child processes inherit it. Tests that check the
# refusal without a key remove it from their own environment.
TEST_USER_ID_SECRET = "pulse-test-user-id-secret"
os.environ.setdefault("PULSE_USER_ID_SECRET", TEST_USER_ID_SECRET)
