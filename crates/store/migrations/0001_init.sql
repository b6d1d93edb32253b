-- mqchat store, schema version 1.

-- Accounts. The profile is kept here too: it is per user and small.
CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    password_hash   TEXT,                      -- argon2id PHC string; NULL: no password login
    disabled        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,          -- ms since the Unix epoch
    profile_name    TEXT,
    profile_avatar  TEXT,
    profile_status  TEXT,
    profile_version INTEGER NOT NULL DEFAULT 0,
    profile_ts      INTEGER
) STRICT;

-- Devices: registered by an administrator (with a token) or on first password login.
CREATE TABLE devices (
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    id          TEXT NOT NULL,
    token_hash  BLOB,                          -- SHA-256 of the device token; NULL: none
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER,                       -- set: the device may not connect
    last_seen   INTEGER,
    PRIMARY KEY (user_id, id)
) STRICT, WITHOUT ROWID;

-- Conversations. A direct one is the unordered pair (user_a <= user_b).
CREATE TABLE conversations (
    id          INTEGER PRIMARY KEY,
    user_a      TEXT,
    user_b      TEXT,
    group_id    TEXT UNIQUE,
    last_seq    INTEGER NOT NULL DEFAULT 0,
    last_ts     INTEGER,
    first_seq   INTEGER NOT NULL DEFAULT 1,   -- first event still kept (retention)
    UNIQUE (user_a, user_b)
) STRICT;

-- A user's side of a conversation: the name they see, their markers, the contact state,
-- and the change token of the last change they should sync.
CREATE TABLE participants (
    user_id     TEXT NOT NULL,
    conv        INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    peer        TEXT,                          -- direct conversations: the other user
    delivered   INTEGER NOT NULL DEFAULT 0,
    read        INTEGER NOT NULL DEFAULT 0,
    contact     INTEGER NOT NULL DEFAULT 0,    -- 0 none, 1 outgoing, 2 incoming, 3 accepted
    change      INTEGER NOT NULL,
    PRIMARY KEY (user_id, conv)
) STRICT, WITHOUT ROWID;
CREATE INDEX participants_by_change ON participants (user_id, change);
CREATE INDEX participants_by_conv ON participants (conv);

-- The archive. `packet` is the packet as accepted from the sender (hub-only envelope fields
-- removed); it is rendered for each reader when delivered.
CREATE TABLE events (
    conv            INTEGER NOT NULL,
    seq             INTEGER NOT NULL,
    ts              INTEGER NOT NULL,
    sender          TEXT NOT NULL,
    sender_device   TEXT NOT NULL,
    client_id       INTEGER NOT NULL,
    kind            INTEGER NOT NULL,
    packet          BLOB NOT NULL,
    PRIMARY KEY (conv, seq)
) STRICT, WITHOUT ROWID;
-- Deduplication: one event per (sender, device, client message id).
CREATE UNIQUE INDEX events_dedup ON events (sender, sender_device, client_id);

-- Events committed but not yet handed to the broker: delivered again after a restart.
CREATE TABLE outbox (
    conv    INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (conv, seq)
) STRICT, WITHOUT ROWID;

-- Hub-wide counters: `change` is the sync change token.
CREATE TABLE counters (
    name    TEXT PRIMARY KEY,
    value   INTEGER NOT NULL
) STRICT;
INSERT INTO counters (name, value) VALUES ('change', 0);
