package handshake

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestFilesCallDownward: the request path reads top to bottom. A file
// calls functions of other files only downward (daemon.go → request.go →
// psk.go, x509.go → …), never one that calls back into it, so a walk from
// ACCEPT to DONE enters each file once. Calls are matched by name to the
// one non-test file that declares that name; names declared in several
// files (interface methods) are not file entries and are left out.
func TestFilesCallDownward(t *testing.T) {
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	decls := map[string][]string{} // name → files declaring it
	parsed := map[string]*ast.File{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		parsed[name] = f
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok {
				decls[fd.Name.Name] = append(decls[fd.Name.Name], name)
			}
		}
	}
	edges := map[string][]string{}
	for name, f := range parsed {
		ast.Inspect(f, func(n ast.Node) bool {
			var id *ast.Ident
			switch x := n.(type) {
			case *ast.CallExpr:
				switch fn := x.Fun.(type) {
				case *ast.Ident:
					id = fn
				case *ast.SelectorExpr:
					id = fn.Sel
				}
			case *ast.SelectorExpr: // method values: (*Daemon).pskHandshake
				id = x.Sel
			}
			if id == nil {
				return true
			}
			if in := decls[id.Name]; len(in) == 1 && in[0] != name && !slices.Contains(edges[name], in[0]) {
				edges[name] = append(edges[name], in[0])
			}
			return true
		})
	}
	// Depth-first search for a cycle.
	state := map[string]int{} // 1: on the stack, 2: done
	var path []string
	var visit func(string) bool
	visit = func(f string) bool {
		state[f] = 1
		path = append(path, f)
		for _, g := range edges[f] {
			if state[g] == 1 {
				t.Errorf("files call each other: %s → %s", strings.Join(path, " → "), g)
				return true
			}
			if state[g] == 0 && visit(g) {
				return true
			}
		}
		path = path[:len(path)-1]
		state[f] = 2
		return false
	}
	for _, f := range files {
		if parsed[f] != nil && state[f] == 0 {
			visit(f)
		}
	}
	if edges["daemon.go"] == nil || !slices.Contains(edges["request.go"], "psk.go") {
		t.Errorf("the call graph looks empty: %v", edges)
	}
}
