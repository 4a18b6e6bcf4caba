/**
 * How a crash-test child tells its test what it has acknowledged, so that a SIGKILL loses none of it.
 *
 * Not on stdout: a child's process.stdout on a pipe is asynchronous; when the test's event loop is busy
 * (another test of the file verifying 48 MiB, a loaded machine) the socket buffer fills, the lines queue
 * up in the child's memory, and a kill -9 throws them away — measured: a parent blocked for one second
 * saw ack 277 of 520,332. A test that bounds what may have happened by the last ack it saw then fails
 * for nothing (the DTL host-loss test did, recovering operations "never acknowledged").
 * Here each line is one write(2) to a file, in the kernel when the child goes on; the test reads the file
 * once the child is dead. A line cut by the kill has no newline and is ignored.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/** Child side: returns a function that appends one line, synchronously. */
export function openAckLog(file: string): (line: string) => void {
  const fd = fs.openSync(file, 'a');
  return (line: string) => {
    fs.writeSync(fd, `${line}\n`);
  };
}

/** Test side, after the child has exited: the complete lines it wrote (none if it never opened the file). */
export function readAckLog(file: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const lines = text.split('\n');
  lines.pop(); // '' after the last newline, or a line the kill cut short
  return lines;
}

/**
 * Test side: runs `node script ...args ackFile`, SIGKILLs it `killAfterMs` after it prints `ready` on stdout
 * and resolves, once it is dead, with the lines of its ack log and its stderr. Rejects if it ends on its own.
 */
export function runUntilKilled(script: string, args: string[], ackFile: string, killAfterMs: number): Promise<{ lines: string[]; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [script, ...args, ackFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let stderr = '';
    let timer: NodeJS.Timeout | undefined;
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (timer === undefined && out.includes('ready\n')) timer = setTimeout(() => p.kill('SIGKILL'), killAfterMs);
    });
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      if (signal === 'SIGKILL') resolve({ lines: readAckLog(ackFile), stderr });
      else reject(new Error(`${path.basename(script)} exited on its own (code ${code}): ${stderr.slice(-3000)}`));
    });
  });
}
