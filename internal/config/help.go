package config

import (
	"fmt"
	"io"
	"reflect"
	"strings"
	"text/tabwriter"
)

// Var is one environment variable of the Config, as --help and "help env" show it.
type Var struct {
	Name    string
	Default string // the value used when unset: "required", "empty", or a value
	Help    string
}

// Vars lists every environment variable the Config reads, in field order, from the same struct tags
// the configuration is parsed with, so that the help cannot drift from the parser.
func Vars() []Var {
	var vs []Var
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("env"), ",")
		if name == "" || name == "-" {
			continue
		}
		def, ok := f.Tag.Lookup("envDefault")
		switch {
		case ok:
		case f.Tag.Get("helpDefault") != "":
			def = f.Tag.Get("helpDefault")
		case strings.Contains(opts, "required"):
			def = "required"
		default:
			def = "empty"
		}
		vs = append(vs, Var{Name: name, Default: def, Help: f.Tag.Get("help")})
	}
	return vs
}

// WriteVars writes every variable as a table: name, default, one line of meaning.
func WriteVars(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  VARIABLE\tDEFAULT\tMEANING")
	for _, v := range Vars() {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", v.Name, v.Default, v.Help)
	}
	return tw.Flush()
}
