// Package cliflag prints the flags of a command the way users type them: --flag, as kubectl
// and most Kubernetes tools show them. The standard library's flag package accepts both -flag
// and --flag, but lists them with a single dash.
package cliflag

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// Usage returns a flag.FlagSet Usage function printing the synopsis, then every flag as
// --name, its kind, its help and its default.
func Usage(fs *flag.FlagSet, synopsis string) func() {
	return func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage:\n  %s\n\nFlags:\n", synopsis)
		PrintDefaults(w, fs)
	}
}

// PrintDefaults writes the flags of fs to w, each as --name. A one-letter flag with the same
// help as a longer one is its short form, shown as "-f, --filename".
func PrintDefaults(w io.Writer, fs *flag.FlagSet) {
	short := map[string]string{} // help -> one-letter name
	fs.VisitAll(func(f *flag.Flag) {
		if len(f.Name) == 1 {
			short[f.Usage] = f.Name
		}
	})
	fs.VisitAll(func(f *flag.Flag) {
		if len(f.Name) == 1 && hasLong(fs, f) {
			return
		}
		kind, help := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if s, ok := short[f.Usage]; ok && len(f.Name) > 1 {
			line = "  -" + s + ", --" + f.Name
		} else if len(f.Name) == 1 {
			line = "  -" + f.Name
		}
		if kind != "" {
			line += " " + kind
		}
		fmt.Fprintln(w, line)
		fmt.Fprintf(w, "      %s", strings.ReplaceAll(help, "\n", "\n      "))
		if !isZero(f) {
			fmt.Fprintf(w, " (default %q)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}

// isZero reports whether the flag's default is its type's zero value, which is not shown.
func isZero(f *flag.Flag) bool {
	switch f.DefValue {
	case "", "0", "false", "0s":
		return true
	}
	return false
}

// hasLong reports whether a one-letter flag is the short form of a longer one.
func hasLong(fs *flag.FlagSet, f *flag.Flag) bool {
	found := false
	fs.VisitAll(func(g *flag.Flag) {
		found = found || (len(g.Name) > 1 && g.Usage == f.Usage)
	})
	return found
}

// ParseInterspersed parses args with fs, letting flags come after the positional arguments
// as kubectl allows ("explain deploy/web -n shop"): it parses again after each positional
// argument, and returns them in order. Its error is fs.Parse's, flag.ErrHelp included.
func ParseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional, args = append(positional, fs.Arg(0)), fs.Args()[1:]
	}
}
