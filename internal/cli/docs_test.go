package cli

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestDocsNameOnlyWhatThePluginHas: every `kubectl apikey` command the
// README and docs/ show, and every flag they give it, is one the plugin
// has: a renamed flag cannot leave the documentation behind.
func TestDocsNameOnlyWhatThePluginHas(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, filepath.Join("..", "..", "README.md"))
	root := NewCommand(&Options{})
	// "kubectl apikey <command> ..." up to the end of a code span or line,
	// and the rows of the command table ("| `create NAME (--months N ...`").
	invocation := regexp.MustCompile("kubectl apikey ([a-z][a-z-]*(?: [a-z]+)?)([^`\n|]*)")
	row := regexp.MustCompile("(?m)^\\| `([a-z]+(?: [a-z]+)?)(?: \\(`[a-z]+`\\))?((?:[^|\\\\]|\\\\.)*)\\|")
	flag := regexp.MustCompile(`(?:^|[\s(\[|])--([a-z][a-z-]*)`)
	checked := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		text := string(raw)
		var uses [][]string
		uses = append(uses, invocation.FindAllStringSubmatch(text, -1)...)
		if _, table, ok := strings.Cut(text, "| Command | What it does |"); ok {
			table, _, _ = strings.Cut(table, "\n\n")
			uses = append(uses, row.FindAllStringSubmatch(table, -1)...)
		}
		for _, u := range uses {
			cmd := find(root, strings.Fields(u[1]))
			if cmd == nil {
				t.Errorf("%s: kubectl apikey %s: no such command", f, u[1])
				continue
			}
			for _, m := range flag.FindAllStringSubmatch(u[2], -1) {
				checked++
				if cmd.Flags().Lookup(m[1]) == nil && cmd.InheritedFlags().Lookup(m[1]) == nil && root.PersistentFlags().Lookup(m[1]) == nil {
					t.Errorf("%s: kubectl apikey %s: no flag --%s", f, cmd.CommandPath(), m[1])
				}
			}
		}
	}
	if checked < 20 {
		t.Fatalf("only %d flags found in the docs: the patterns no longer match them", checked)
	}
}

// find is the command words name under root, or nil; a word that is not a
// subcommand (an argument) ends the walk.
func find(root *cobra.Command, words []string) *cobra.Command {
	cmd := root
	for i, w := range words {
		next, _, err := cmd.Find([]string{w})
		if err != nil || next == cmd {
			if i == 0 {
				return nil
			}
			return cmd
		}
		cmd = next
	}
	return cmd
}
