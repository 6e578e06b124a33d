package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// command is a subcommand's flag set where every flag has an environment variable: the variable
// sets the default, the flag overrides it.
type command struct {
	fs   *flag.FlagSet
	name string
	help string
	envs []envFlag
	err  error // a bad environment value, reported at parse time
}

type envFlag struct{ flag, env string }

func newCommand(name, help string) *command {
	c := &command{fs: flag.NewFlagSet(name, flag.ContinueOnError), name: name, help: help}
	c.fs.SetOutput(io.Discard)
	return c
}

func (c *command) env(name, env string) (string, bool) {
	c.envs = append(c.envs, envFlag{name, env})
	return os.LookupEnv(env)
}

func (c *command) String(name, env, def, usage string) *string {
	if v, ok := c.env(name, env); ok {
		def = v
	}
	return c.fs.String(name, def, usage)
}

func (c *command) Bool(name, env string, def bool, usage string) *bool {
	if v, ok := c.env(name, env); ok {
		b, err := parseBool(v)
		if err != nil {
			c.err = errors.Join(c.err, fmt.Errorf("%s=%q: %v", env, v, err))
		}
		def = b
	}
	return c.fs.Bool(name, def, usage)
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "1", "true", "yes", "on":
		return true, nil
	case "0", "false", "no", "off", "":
		return false, nil
	}
	return false, fmt.Errorf("not a boolean")
}

func (c *command) Int(name, env string, def int, usage string) *int {
	if v, ok := c.env(name, env); ok {
		var n int
		if _, err := fmt.Sscan(v, &n); err != nil {
			c.err = errors.Join(c.err, fmt.Errorf("%s=%q is not an integer", env, v))
		}
		def = n
	}
	return c.fs.Int(name, def, usage)
}

func (c *command) Float(name, env string, def float64, usage string) *float64 {
	if v, ok := c.env(name, env); ok {
		var n float64
		if _, err := fmt.Sscan(v, &n); err != nil {
			c.err = errors.Join(c.err, fmt.Errorf("%s=%q is not a number", env, v))
		}
		def = n
	}
	return c.fs.Float64(name, def, usage)
}

func (c *command) Duration(name, env string, def time.Duration, usage string) *time.Duration {
	if v, ok := c.env(name, env); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			c.err = errors.Join(c.err, fmt.Errorf("%s=%q is not a duration (like 30s or 1h)", env, v))
		}
		def = d
	}
	return c.fs.Duration(name, def, usage)
}

// given reports whether the flag was set on the command line or its environment variable is
// present (even empty): a setting given but empty is a mistake to report, not a default.
func (c *command) given(name string) bool {
	set := false
	c.fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	for _, e := range c.envs {
		if e.flag == name {
			if _, ok := os.LookupEnv(e.env); ok {
				set = true
			}
		}
	}
	return set
}

// parse parses args; ok false means the command should exit with code (0 after --help).
func (c *command) parse(args []string) (code int, ok bool) {
	err := c.fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		c.usage(os.Stdout)
		return 0, false
	}
	if err == nil {
		err = c.err
	}
	if err == nil && c.fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %q", c.fs.Arg(0))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "roomlog %s: %v (see 'roomlog %s --help')\n", c.name, err, c.name)
		return 2, false
	}
	return 0, true
}

func (c *command) usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: roomlog %s [flags]\n\n%s\n\nFlags:\n", c.name, c.help)
	envOf := map[string]string{}
	for _, e := range c.envs {
		envOf[e.flag] = e.env
	}
	c.fs.VisitAll(func(f *flag.Flag) {
		def := f.DefValue
		if def == "" {
			def = `""`
		}
		if env := envOf[f.Name]; env != "" {
			fmt.Fprintf(w, "  --%s\n        %s (env %s, default %s)\n", f.Name, f.Usage, env, def)
		} else {
			fmt.Fprintf(w, "  --%s\n        %s (default %s)\n", f.Name, f.Usage, def)
		}
	})
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
