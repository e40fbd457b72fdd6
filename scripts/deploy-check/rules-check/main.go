// rules-check validates Prometheus alerting and recording rule files with Prometheus's own
// packages: rulefmt.ParseFile is what `promtool check rules` runs on each file (YAML
// structure and unknown fields, every expression's PromQL, alert and record names, label
// and annotation templates). With --exprs it instead parses a file of PromQL expressions,
// one per line (the Grafana dashboard's queries). With --metrics it prints, one per line,
// every metric name the rules or expressions select, for checking against the code.
//
//	rules-check [--metrics] RULES.yml...
//	rules-check --exprs [--metrics] EXPRS.txt
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

func main() {
	exprs := flag.Bool("exprs", false, "the files hold PromQL expressions, one per line")
	metrics := flag.Bool("metrics", false, "print the metric names the expressions select")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: rules-check [--exprs] [--metrics] FILE...")
		os.Exit(2)
	}
	names := map[string]bool{}
	failed := false
	collect := func(expr string) error {
		e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
		if err != nil {
			return err
		}
		parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
			if v, ok := n.(*parser.VectorSelector); ok && v.Name != "" {
				names[v.Name] = true
			}
			return nil
		})
		return nil
	}
	for _, file := range flag.Args() {
		if *exprs {
			f, err := os.Open(file)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			scanner := bufio.NewScanner(f)
			line := 0
			count := 0
			for scanner.Scan() {
				line++
				text := strings.TrimSpace(scanner.Text())
				if text == "" || strings.HasPrefix(text, "#") {
					continue
				}
				count++
				if err := collect(text); err != nil {
					fmt.Fprintf(os.Stderr, "%s:%d: %v\n  %s\n", file, line, err, text)
					failed = true
				}
			}
			f.Close()
			if !failed {
				fmt.Fprintf(os.Stderr, "SUCCESS: %s: %d expressions parsed\n", file, count)
			}
			continue
		}
		groups, errs := rulefmt.ParseFile(file, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
		if len(errs) > 0 {
			for _, err := range errs {
				fmt.Fprintf(os.Stderr, "%s: %v\n", file, err)
			}
			failed = true
			continue
		}
		rules := 0
		for _, g := range groups.Groups {
			for _, r := range g.Rules {
				rules++
				if err := collect(r.Expr); err != nil {
					fmt.Fprintf(os.Stderr, "%s: %v\n", file, err)
					failed = true
				}
			}
		}
		fmt.Fprintf(os.Stderr, "SUCCESS: %s: %d rules found\n", file, rules)
	}
	if failed {
		fmt.Fprintln(os.Stderr, "FAILED")
		os.Exit(1)
	}
	if *metrics {
		list := make([]string, 0, len(names))
		for n := range names {
			list = append(list, n)
		}
		sort.Strings(list)
		for _, n := range list {
			fmt.Println(n)
		}
	}
}
