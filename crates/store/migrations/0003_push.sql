-- mqchat store, schema version 3: client state, push targets and mutes (spec 7.13).

-- Whether each device is connected (from its presence) and active (from client-state).
ALTER TABLE devices ADD COLUMN connected INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN active INTEGER NOT NULL DEFAULT 1;

-- One push target per device.
CREATE TABLE push_targets (
    user_id     TEXT NOT NULL,
    device      TEXT NOT NULL,
    provider    INTEGER NOT NULL,              -- 0 fcm, 1 apns, 2 web-push, 3 unified-push
    address     TEXT NOT NULL,                 -- token or endpoint URL
    topic       TEXT,                          -- APNs bundle id
    sandbox     INTEGER NOT NULL DEFAULT 0,    -- APNs development token
    p256dh      TEXT,                          -- Web Push key
    auth        TEXT,                          -- Web Push secret
    preview     INTEGER NOT NULL DEFAULT 0,    -- may show message text
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, device),
    FOREIGN KEY (user_id, device) REFERENCES devices (user_id, id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

-- A user's mute of a conversation: no pushes for it before this time (ms; 0: not muted).
ALTER TABLE participants ADD COLUMN muted_until INTEGER NOT NULL DEFAULT 0;
