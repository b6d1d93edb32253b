-- mqchat store, schema version 2: group chat.

-- A group conversation's profile (group_id exists since version 1).
ALTER TABLE conversations ADD COLUMN name TEXT;
ALTER TABLE conversations ADD COLUMN avatar TEXT;
ALTER TABLE conversations ADD COLUMN description TEXT;
ALTER TABLE conversations ADD COLUMN history_all INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;

-- Membership: role (0 member, 1 admin, 2 owner), state (0 member, 1 invited, 2 former),
-- and the window of events the participant may read.
ALTER TABLE participants ADD COLUMN role INTEGER NOT NULL DEFAULT 0;
ALTER TABLE participants ADD COLUMN state INTEGER NOT NULL DEFAULT 0;
ALTER TABLE participants ADD COLUMN since_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE participants ADD COLUMN until_seq INTEGER;

-- Events the hub makes (invitations, joins...) have no client message id: the column
-- becomes nullable (SQLite's unique index lets NULLs repeat).
CREATE TABLE events_v2 (
    conv            INTEGER NOT NULL,
    seq             INTEGER NOT NULL,
    ts              INTEGER NOT NULL,
    sender          TEXT NOT NULL,
    sender_device   TEXT NOT NULL,
    client_id       INTEGER,
    kind            INTEGER NOT NULL,
    packet          BLOB NOT NULL,
    PRIMARY KEY (conv, seq)
) STRICT, WITHOUT ROWID;
INSERT INTO events_v2 SELECT conv, seq, ts, sender, sender_device, client_id, kind, packet FROM events;
DROP TABLE events;
ALTER TABLE events_v2 RENAME TO events;
CREATE UNIQUE INDEX events_dedup ON events (sender, sender_device, client_id);
