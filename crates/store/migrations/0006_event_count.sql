-- How many events were ever stored (issue 17), counted in the transaction that stores them.
-- After each commit that stored events, the server writes the count to a file beside the
-- database (`mqchat.db-count`, outside the WAL); a later start that finds the database's
-- count below the file's knows that committed events were lost (a WAL deleted, truncated or
-- damaged, an older backup put back) and refuses to hand out their sequence numbers again
-- (crates/store/src/tail.rs).
INSERT INTO counters (name, value) VALUES ('events', (SELECT count(*) FROM events));
