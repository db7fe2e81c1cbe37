// Package audit writes the gateway's audit trail: one JSON record per line,
// hash-chained, and reads it back (Verify, Show, Tail).
//
// # Chain
//
// Each record's "hash" is the hex SHA-256 of its own line with the hash
// digits removed (the line as written with "hash":""). Because the exact
// bytes are hashed, Verify needs no canonicalisation: field order, number
// formatting and map ordering (sorted by encoding/json) are whatever was
// written. "prev" is the previous record's hash (64 zeros for the first
// record) and "seq" increases by one per record, so Verify distinguishes an
// edited record, a deleted one and reordered ones. The chain is not keyed:
// it proves that the log is internally consistent and lets an operator who
// kept a later hash (VerifyResult.LastHash, the log of a start record) prove
// that nothing before it changed; it does not stop someone who can rewrite
// the whole file and every later hash.
//
// # Durability
//
//   - FsyncAlways: Write returns after an fsync that covers its record.
//     Concurrent writers share fsyncs (group commit), so throughput grows
//     with concurrency while each call still waits for the disk.
//   - FsyncBatch (default): Write returns after write(2), before fsync. The
//     record survives a crash of the gateway process at once (it is in the
//     kernel), and a crash of the machine once the next group fsync ran: at
//     most BatchInterval (50ms) after the first unsynced record, or as soon
//     as BatchRecords (256) are unsynced, plus the time of the fsync itself.
//     A failed fsync makes every later Write fail (fail closed).
//   - FsyncNever: fsync only on Close; the OS decides when data reaches disk.
//
// # Files
//
// Rotation renames the file to Path.<UTC time, 20060102T150405.000000000Z>,
// so the names sort in chain order (Files lists them); the new file starts
// with a "rotate" record chained to the old file's last hash. Open resumes
// the chain of an existing file: a torn last line left by a crash is kept as
// evidence, terminated with a newline, and followed by an explicit "gap"
// record; a complete record that fails its hash makes Open fail (ErrCorrupt).
package audit
