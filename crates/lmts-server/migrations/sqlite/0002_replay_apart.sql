-- The replay record moved to a file of its own (replay.db), whose commits are not synced to
-- disk one by one; its rows here only ever lived for the window.
DROP TABLE used_signatures;
