import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/** A temp directory standing in for /sys/fs/cgroup; control files are plain files. */
export async function fakeRoot(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'petri-fake-cg-'));
}

/** Writes control files (name → content) into a fake cgroup directory, making it if needed. */
export async function files(dir: string, content: Record<string, string>): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  for (const [name, value] of Object.entries(content)) {
    await fs.writeFile(path.join(dir, name), value);
  }
}

export async function read(file: string): Promise<string> {
  return fs.readFile(file, 'utf8');
}

export async function exists(file: string): Promise<boolean> {
  return fs.access(file).then(
    () => true,
    () => false,
  );
}

/** Fake trees hold plain files, which rmdir refuses; the kernel's cgroupfs does not. */
export const removeFakeDir = (dir: string) => fs.rm(dir, { recursive: true, force: true });
