-- mqchat store, schema version 4: calls and conversations with SIP addresses (spec 19).

-- A conversation with an address outside mqchat is the pair (user_a, sip): one user and
-- the SIP address, with a participant row for the user only. `sip_delivered` is the outside
-- party's delivered marker, moved by the 2xx answers to the SIP MESSAGEs sent to it.
ALTER TABLE conversations ADD COLUMN sip TEXT;
ALTER TABLE conversations ADD COLUMN sip_delivered INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX conversations_by_sip ON conversations (user_a, sip) WHERE sip IS NOT NULL;

-- Events that do not count as unread for anyone (call records other than missed calls).
ALTER TABLE events ADD COLUMN quiet INTEGER NOT NULL DEFAULT 0;

-- Calls through the hub's SIP proxy, from the INVITE to the record (the SIP transaction
-- state itself lives in memory). A party is a user id or a SIP address.
CREATE TABLE calls (
    call_id       TEXT PRIMARY KEY,            -- the INVITE's Call-ID
    caller        TEXT NOT NULL,
    caller_device TEXT NOT NULL,               -- the caller's device, or the gateway's name
    callee        TEXT NOT NULL,
    branches      TEXT NOT NULL DEFAULT '',    -- callee devices offered the call, comma-separated
    media         TEXT NOT NULL DEFAULT '',    -- SDP media kinds of the offer, comma-separated
    rang          INTEGER NOT NULL DEFAULT 0,  -- a device rang or was woken
    started       INTEGER NOT NULL,
    answered      INTEGER,
    answered_by   TEXT,
    ended         INTEGER,                     -- set once the call is recorded
    outcome       INTEGER                      -- the record's outcome (spec 7.14)
) STRICT, WITHOUT ROWID;
CREATE INDEX calls_unfinished ON calls (ended) WHERE ended IS NULL;
