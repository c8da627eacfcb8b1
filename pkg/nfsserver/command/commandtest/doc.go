// Package commandtest is a fake command.Runner for tests: it records every command,
// plays scripted results, and gives each started helper a fake process the test can
// make exit.
package commandtest
