// Package config layers a program's settings: flag defaults, then a JSON
// config file, then environment variables, then command-line flags, each
// overriding the one before. Every setting is a flag of a flag.FlagSet; the
// file uses the flag names as keys and the environment uses PREFIX_NAME with
// the name upper-cased and dashes turned into underscores (MPIM_REDIS_ADDR
// for --redis-addr). Only cmd/ packages use it: libraries receive Config
// structs.
package config

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
)

// Load parses args into fs, taking values from the JSON file named by the
// flag configFlag (if fs has it and it is set, by flag or environment) and
// from the environment (lookup, usually os.LookupEnv) for flags not given on
// the command line. It reports every bad value at once.
func Load(fs *flag.FlagSet, args []string, envPrefix, configFlag string, lookup func(string) (string, bool)) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })

	var errs []error
	fromEnv := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := lookup(EnvName(envPrefix, f.Name)); ok {
			fromEnv[f.Name] = v
		}
	})
	if configFlag != "" && fs.Lookup(configFlag) != nil {
		path := fs.Lookup(configFlag).Value.String()
		if !explicit[configFlag] {
			if v, ok := fromEnv[configFlag]; ok {
				path = v
			}
		}
		if path != "" {
			fileValues, err := readFile(path)
			if err != nil {
				return err
			}
			keys := make([]string, 0, len(fileValues))
			for k := range fileValues {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, name := range keys {
				if fs.Lookup(name) == nil {
					errs = append(errs, fmt.Errorf("config file %s: unknown setting %q", path, name))
					continue
				}
				if explicit[name] || fromEnv[name] != "" {
					continue
				}
				if err := fs.Set(name, fileValues[name]); err != nil {
					errs = append(errs, fmt.Errorf("config file %s: %s: %w", path, name, err))
				}
			}
		}
	}
	names := make([]string, 0, len(fromEnv))
	for n := range fromEnv {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		if explicit[name] {
			continue
		}
		if err := fs.Set(name, fromEnv[name]); err != nil {
			errs = append(errs, fmt.Errorf("environment %s: %w", EnvName(envPrefix, name), err))
		}
	}
	return errors.Join(errs...)
}

// EnvName is the environment variable of a flag.
func EnvName(prefix, flagName string) string {
	return prefix + "_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// readFile reads a JSON object of settings; values may be strings, numbers,
// booleans or arrays of strings (joined with commas).
func readFile(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		switch v := v.(type) {
		case string:
			out[k] = v
		case float64, bool:
			out[k] = fmt.Sprint(v)
		case []any:
			parts := make([]string, len(v))
			for i, p := range v {
				parts[i] = fmt.Sprint(p)
			}
			out[k] = strings.Join(parts, ",")
		default:
			return nil, fmt.Errorf("config file %s: %s: unsupported value %v", path, k, v)
		}
	}
	return out, nil
}

// List is a flag.Value holding a comma-separated list.
type List []string

func (l *List) String() string { return strings.Join(*l, ",") }

// Set replaces the list with the comma-separated values of s.
func (l *List) Set(s string) error {
	*l = nil
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*l = append(*l, part)
		}
	}
	return nil
}
