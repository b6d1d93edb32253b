-- Live sessions an administrator ended (issue 15): `mqchat user disable|delete|passwd` and
-- `mqchat device revoke` write a row per affected device, in the same transaction as the
-- change; every running server (or hub) reads the rows it has not seen and closes those
-- devices' broker sessions. Rows are removed once they are old (an hour).
CREATE TABLE session_ends (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    reason      TEXT NOT NULL,                 -- disabled, deleted, password, revoked
    at          INTEGER NOT NULL
) STRICT;

-- Whether the device's last login used the account's password (not its device token):
-- a password change ends those sessions only.
ALTER TABLE devices ADD COLUMN password_login INTEGER NOT NULL DEFAULT 0;
