/** Quotes a word for /bin/sh: single quotes, with embedded ones closed, escaped and reopened. */
export function shellQuote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/**
 * Prefixes `command` with a tiny shell that writes its own PID into every
 * procs file and then execs the command, so the process is inside its cgroup
 * before any function code runs (children inherit it). Costs one `sh` start
 * (~1 ms); the exec keeps the PID, so the driver's child is still the command.
 * `shell` is an absolute path resolved from the trusted PATH at start: the
 * chain runs as root, so it never looks a program up by name.
 *
 * @example joinCgroupCommand(['/sys/fs/cgroup/cpu/petri/t/i/cgroup.procs'], ['node', 'host.js'])
 * // ['/bin/sh', '-c', "echo $$ > '/sys/…/cgroup.procs' && exec \"$@\"", 'petri-join', 'node', 'host.js']
 */
export function joinCgroupCommand(
  procsFiles: string[],
  command: string[],
  shell = '/bin/sh',
): string[] {
  if (procsFiles.length === 0) return command;
  const joins = procsFiles.map((file) => `echo $$ > ${shellQuote(file)}`);
  return [shell, '-c', `${joins.join(' && ')} && exec "$@"`, 'petri-join', ...command];
}
