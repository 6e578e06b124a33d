package eventlog_test

func runCrashChild() bool { return false }
