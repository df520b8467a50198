/**
 * Imported first by bench/run.ts, before anything loads the broker's logger: the renewal paths
 * log a line per renewal at INFO (and the session-claim run one WARN line per refused open), and
 * thousands of them would bury the table. Powertools reads the
 * level from the environment when the logger is built and restores it on every invocation, so
 * it has to be set here rather than with logger.setLogLevel. `--verbose` keeps INFO.
 */
if (!process.argv.includes('--verbose')) process.env.POWERTOOLS_LOG_LEVEL ??= 'ERROR';
