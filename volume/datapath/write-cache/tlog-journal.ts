/**
 * The TLog files of one vDisk's write cache as they are written: the open TLog's journal (created with its
 * header, appended to, replaced after a repair at a local restart), closed TLogs rewritten or deleted. Writes
 * that fail go through the cache's fault (cache-files.ts); their syncs are cache-sync.ts's.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fsyncDir } from '../../../util/fsync-dir.js';
import { CacheFiles } from './cache-files.js';
import { writevFully } from './writev-fully.js';
import { encodeRecord, RecordType, tlogName, type TLogRecord } from '../formats/tlog-format.js';

export abstract class TlogJournal extends CacheFiles {
  // the open TLog
  protected journalFd = -1;
  protected journalNo = 0;
  protected journalPos = 0;
  protected journalEvents = 0;
  protected journalScoList: number[] = [];
  protected journalSynced = true;
  /** The directories gained or lost an entry since their last fsync. */
  protected dirsDirty = false;

  /** Replaces `file` with `records` (a TLog's, header included) atomically and durably; returns its length. */
  protected replaceFile(file: string, records: TLogRecord[]): number {
    const bytes = Buffer.concat(records.map((r) => encodeRecord(r)));
    const tmp = `${file}.repair`;
    fs.writeFileSync(tmp, bytes);
    const fd = fs.openSync(tmp, 'r');
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, file);
    fsyncDir(this.tlogDir);
    return bytes.length;
  }

  /** Writes closed TLog `tlog` again with `records` (after a repair), atomically. */
  rewriteClosedTlog(tlog: number, records: TLogRecord[]): void {
    this.replaceFile(this.tlogPath(tlog), [{ type: RecordType.Header, vdiskId: this.vdiskId, tlog }, ...records]);
  }

  deleteClosedTlog(tlog: number): void {
    try {
      this.io.unlink(this.tlogPath(tlog));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }

  protected openJournal(tlog: number): void {
    const { fd, bytes } = this.createJournal(tlog);
    this.useJournal(tlog, fd, bytes);
  }

  /** Creates journal `tlog` with its header; on failure nothing is left behind (NO_SPACE, or a fault). */
  protected createJournal(tlog: number): { fd: number; bytes: number } {
    this.checkWritable();
    const file = path.join(this.tlogDir, `${tlogName(tlog)}.open`);
    const header = encodeRecord({ type: RecordType.Header, vdiskId: this.vdiskId, tlog });
    let fd = -1;
    try {
      fd = this.io.open(file, 'w+');
      writevFully(this.io, fd, [header], 0);
    } catch (err) {
      try {
        if (fd >= 0) this.io.close(fd);
        this.io.unlink(file);
      } catch {
        // best effort: a leftover empty journal above the real one is removed at the next start
      }
      throw this.writeFailed(err, `create TLog ${tlog}`);
    }
    return { fd, bytes: header.length };
  }

  protected useJournal(tlog: number, fd: number, bytes: number): void {
    this.journalFd = fd;
    this.journalNo = tlog;
    this.journalPos = bytes;
    this.journalEvents = 0;
    this.journalScoList = [];
    this.journalSynced = false;
    this.dirsDirty = true;
  }

  protected noteScoInJournal(sco: number): void {
    this.journalScoList.push(sco);
  }

  protected append(frame: Buffer): void {
    this.checkWritable();
    try {
      writevFully(this.io, this.journalFd, [frame], this.journalPos);
    } catch (err) {
      throw this.writeFailed(err, `append to TLog ${this.journalNo}`);
    }
    this.journalPos += frame.length;
    this.journalSynced = false;
  }

  override close(): void {
    super.close();
    if (this.journalFd >= 0) this.io.close(this.journalFd);
    this.journalFd = -1;
  }
}
