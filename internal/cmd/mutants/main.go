// Command mutants disables the validation checks of the protocol packages
// one at a time and reports the ones no test notices.
//
// A validation check is an if statement, in a function that returns an
// error, whose body returns a non-nil error: `if <cond> { return ...,
// err }`. Each check becomes a mutant whose condition can never hold
// (`false && (<cond>)`; a condition `a || b` gives one mutant per
// operand), and the default clause of a switch that returns an error
// becomes a mutant with an empty body. Plain error propagation (`if err !=
// nil { return err }`) counts as a check when err holds the only result of
// the call before it, as after a verify or validate call; with -all it
// counts after every call.
//
// The mutants of a package are compiled together as a mutant schema: each
// check is guarded by a call that is false only for the mutant chosen by
// the environment variable E2EE_MUTANT, in a copy of the files given to
// `go test -c -overlay`, so no file in the tree is changed and each test
// binary is built once. The binaries are those of the package and of the
// packages above it that matter: ./treekem then ./mls for a treekem
// mutant, ./keyschedule then ./mls for a keyschedule mutant, ./mls for an
// mls mutant. They first run with no mutant (all must pass), then once per
// mutant, in order, stopping at the first failure. A mutant is killed when
// a test fails, and survives when all pass. A survivor is a check no test
// proves.
//
// A check that does not refuse peer input (an error marshaling our own
// data, a misuse of the API by the caller, the sending side) is not
// mutated when it is listed, with the reason, in
// internal/cmd/mutants/skip.txt (by file, function and check text, so the
// list survives edits elsewhere in the file; see readSkipFile), or marked
// with a comment `// mutants:skip <reason>` on the line of the if or the
// line above it.
//
// Run it from the module root, niced, as it runs the tests once per
// mutant:
//
//	go run ./internal/cmd/mutants -list                         # the sites
//	nice -n 10 go run ./internal/cmd/mutants -files process.go,framing.go
//	nice -n 10 go run ./internal/cmd/mutants -pkgs treekem -timeout 3m
//	nice -n 10 go run ./internal/cmd/mutants -sites mls/process.go:212
//
// or through internal/cmd/mutants/run.sh, which does the same with nice.
// It prints one line per mutant (KILLED, SURVIVED, TIMEOUT or NOBUILD, and
// the site) and a summary per package; the exit status is 1 when a mutant
// survived.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
)

// mutant is one check disabled.
type mutant struct {
	pkg   string // package directory, e.g. "mls"
	file  string // path relative to the module root
	fn    string // the enclosing function declaration
	line  int
	kind  string // "if", "or" (one operand of a ||) or "default"
	start int    // byte offsets of the replaced text
	end   int
	orig  string // the original text of the span
	text  string // the original text, for the report
	id    int    // the mutant's number in its package's schema
}

func (m *mutant) site() string { return fmt.Sprintf("%s:%d", m.file, m.line) }

// testPkgs lists the packages whose tests run for a mutant of pkg, in
// order.
var testPkgs = map[string][]string{
	"mls":         {"./mls"},
	"treekem":     {"./treekem", "./mls"},
	"keyschedule": {"./keyschedule", "./mls"},
}

func main() {
	var (
		pkgs     = flag.String("pkgs", "mls,treekem", "comma-separated package directories to mutate")
		files    = flag.String("files", "", "comma-separated file base names to mutate (default all non-test files)")
		sites    = flag.String("sites", "", "comma-separated file:line sites to mutate (default all)")
		list     = flag.Bool("list", false, "only list the mutants")
		all      = flag.Bool("all", false, "also mutate error propagation after calls with several results")
		run      = flag.String("run", "", "passed to go test -run")
		skip     = flag.String("skip", "", "passed to go test -skip (a quick screen: confirm survivors without it)")
		first    = flag.String("first", "", "a -run pattern of tests tried first for each mutant; the rest run only if they all pass")
		timeout  = flag.Duration("timeout", 4*time.Minute, "time limit per mutant and package")
		skipFile = flag.String("skipfile", "internal/cmd/mutants/skip.txt", "file of checks not to mutate (see the package comment)")
		verbose  = flag.Bool("v", false, "print the test output of surviving and unbuildable mutants")
	)
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: go run ./internal/cmd/mutants [flags]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if _, err := os.Stat("go.mod"); err != nil {
		fatalf("run from the module root: %v", err)
	}
	var ms []*mutant
	for _, pkg := range split(*pkgs) {
		if testPkgs[pkg] == nil {
			fatalf("unknown package %q", pkg)
		}
		found, err := findMutants(pkg, split(*files), *all)
		if err != nil {
			fatalf("%v", err)
		}
		ms = append(ms, found...)
	}
	skips, err := readSkipFile(*skipFile)
	if err != nil {
		fatalf("%v", err)
	}
	used := map[string]bool{}
	ms = slices.DeleteFunc(ms, func(m *mutant) bool {
		for _, k := range []string{m.file + "\t*\t*", m.file + "\t" + m.fn + "\t*", m.file + "\t" + m.fn + "\t" + m.text} {
			if skips[k] {
				used[k] = true
				return true
			}
		}
		return false
	})
	if *files == "" && *sites == "" {
		for k := range skips {
			if !used[k] && slices.Contains(split(*pkgs), strings.Split(k, "/")[0]) {
				fmt.Fprintf(os.Stderr, "mutants: skip entry matches no check (stale?): %s\n", strings.ReplaceAll(k, "\t", " | "))
			}
		}
	}
	if want := split(*sites); len(want) > 0 {
		ms = slices.DeleteFunc(ms, func(m *mutant) bool { return !slices.Contains(want, m.site()) })
	}
	if *list {
		for _, m := range ms {
			fmt.Printf("%s\t%s\t%s\t%s\n", m.site(), m.fn, m.kind, m.text)
		}
		fmt.Printf("%d mutants\n", len(ms))
		return
	}
	if os.Getenv("MLS_REQUIRE_VECTORS") == "" {
		os.Setenv("MLS_REQUIRE_VECTORS", "1")
	}
	tmp, err := os.MkdirTemp("", "mutants")
	if err != nil {
		fatalf("%v", err)
	}
	defer os.RemoveAll(tmp)

	type tally struct{ killed, survived, timeout int }
	counts := map[string]*tally{}
	var survivors []string
	byPkg := map[string][]*mutant{}
	var pkgOrder []string
	for _, m := range ms {
		if byPkg[m.pkg] == nil {
			pkgOrder = append(pkgOrder, m.pkg)
		}
		byPkg[m.pkg] = append(byPkg[m.pkg], m)
	}
	for _, pkg := range pkgOrder {
		bins := buildSchema(tmp, pkg, byPkg[pkg])
		counts[pkg] = &tally{}
		// Without a mutant, every test must pass.
		if res, out := runTests(bins, 0, "", *run, *skip, *timeout); res != "SURVIVED" {
			fatalf("the tests of %s fail without a mutant:\n%s", pkg, out)
		}
		for _, m := range byPkg[pkg] {
			res, out := runTests(bins, m.id, *first, *run, *skip, *timeout)
			by := ""
			if res == "KILLED" {
				by = "\tby " + failedTest(out)
			}
			fmt.Printf("%-8s %s\t%s\t%s%s\n", res, m.site(), m.kind, m.text, by)
			c := counts[pkg]
			switch res {
			case "KILLED":
				c.killed++
			case "TIMEOUT":
				c.timeout++
			default:
				c.survived++
				survivors = append(survivors, m.site()+"\t"+m.text)
			}
			if *verbose && res != "KILLED" {
				fmt.Printf("%s\n", indent(out))
			}
		}
	}
	fmt.Println("== summary")
	for _, p := range pkgOrder {
		c := counts[p]
		fmt.Printf("%s: %d mutants, %d killed, %d timed out, %d survived\n",
			p, c.killed+c.survived+c.timeout, c.killed, c.timeout, c.survived)
	}
	if len(survivors) > 0 {
		fmt.Println("== survivors")
		for _, s := range survivors {
			fmt.Println(s)
		}
		os.Exit(1)
	}
}

// testBinary is a compiled test binary and the directory it runs in.
type testBinary struct{ path, dir string }

// schemaFile is added to the mutated package: mutantKeep(id) is false only
// for the mutant chosen by $E2EE_MUTANT.
const schemaFile = `package %s

import (
	"os"
	"strconv"
)

var mutantChosen, _ = strconv.Atoi(os.Getenv("E2EE_MUTANT"))

func mutantKeep(id int) bool { return mutantChosen != id }
`

// buildSchema writes every mutant of pkg into one copy of its files (a
// mutant schema: each check guarded by mutantKeep(id)), and compiles the
// test binaries of the packages to run, through an overlay.
func buildSchema(dir, pkg string, ms []*mutant) []testBinary {
	byFile := map[string][]*mutant{}
	for i, m := range ms {
		m.id = i + 1
		byFile[m.file] = append(byFile[m.file], m)
	}
	replace := map[string]string{}
	for file, fms := range byFile {
		src, err := os.ReadFile(file)
		if err != nil {
			fatalf("%v", err)
		}
		sort.Slice(fms, func(i, j int) bool { return fms[i].start > fms[j].start })
		for _, m := range fms {
			src = slices.Concat(src[:m.start], []byte(m.schema()), src[m.end:])
		}
		abs, _ := filepath.Abs(file)
		out := filepath.Join(dir, pkg+"_"+filepath.Base(file))
		if err := os.WriteFile(out, src, 0o644); err != nil {
			fatalf("%v", err)
		}
		replace[abs] = out
	}
	absPkg, _ := filepath.Abs(pkg)
	schema := filepath.Join(dir, pkg+"_mutants_schema.go")
	if err := os.WriteFile(schema, fmt.Appendf(nil, schemaFile, filepath.Base(pkg)), 0o644); err != nil {
		fatalf("%v", err)
	}
	replace[filepath.Join(absPkg, "zz_mutants_schema.go")] = schema
	overlay, _ := json.Marshal(map[string]map[string]string{"Replace": replace})
	ofile := filepath.Join(dir, pkg+"_overlay.json")
	if err := os.WriteFile(ofile, overlay, 0o644); err != nil {
		fatalf("%v", err)
	}
	var bins []testBinary
	for _, tp := range testPkgs[pkg] {
		bin := filepath.Join(dir, pkg+"_"+filepath.Base(tp)+".test")
		cmd := exec.Command("go", "test", "-c", "-vet=off", "-overlay", ofile, "-o", bin, tp)
		if out, err := cmd.CombinedOutput(); err != nil {
			fatalf("building the mutant schema of %s for %s: %v\n%s", pkg, tp, err, out)
		}
		d, _ := filepath.Abs(tp)
		bins = append(bins, testBinary{bin, d})
	}
	return bins
}

// schema returns the text that replaces the mutant's span in the schema.
func (m *mutant) schema() string {
	if m.kind == "default" {
		// break leaves the switch: the default clause does nothing.
		return fmt.Sprintf("if !mutantKeep(%d) {\n\t\t\tbreak\n\t\t}\n\t\t%s", m.id, m.orig)
	}
	return fmt.Sprintf("(mutantKeep(%d) && (%s))", m.id, m.orig)
}

// runTests runs the test binaries in order with mutant id chosen, and
// returns the verdict and the output of the last one. If first is set,
// the tests it matches run first in each binary.
func runTests(bins []testBinary, id int, first, run, skip string, timeout time.Duration) (string, []byte) {
	if first != "" {
		if res, out := runTests(bins, id, "", first, skip, timeout); res != "SURVIVED" {
			return res, out
		}
	}
	var out []byte
	for _, b := range bins {
		args := []string{"-test.count=1", "-test.failfast", "-test.timeout=" + timeout.String()}
		if run != "" {
			args = append(args, "-test.run="+run)
		}
		if skip != "" {
			args = append(args, "-test.skip="+skip)
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout+time.Minute)
		cmd := exec.CommandContext(ctx, b.path, args...)
		cmd.Dir = b.dir
		cmd.Env = append(os.Environ(), fmt.Sprintf("E2EE_MUTANT=%d", id))
		var err error
		out, err = cmd.CombinedOutput()
		expired := ctx.Err() != nil
		cancel()
		if err == nil {
			continue
		}
		if expired || bytes.Contains(out, []byte("panic: test timed out")) {
			return "TIMEOUT", out
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			fatalf("%s: %v", b.path, err)
		}
		return "KILLED", out
	}
	return "SURVIVED", out
}

var failLine = regexp.MustCompile(`--- FAIL: (\S+)`)

// failedTest returns the name of the first test that failed in out, or the
// first line of a panic.
func failedTest(out []byte) string {
	if m := failLine.FindSubmatch(out); m != nil {
		return string(m[1])
	}
	if i := bytes.Index(out, []byte("panic: ")); i >= 0 {
		line, _, _ := bytes.Cut(out[i:], []byte("\n"))
		return oneLine(line)
	}
	return "?"
}

// readSkipFile reads the checks not to mutate: one per line, as
// "file<TAB>function<TAB>check text<TAB>reason", the first three exactly
// as -list prints them; a function or check of "*" matches all. Lines
// starting with # are comments.
func readSkipFile(path string) (map[string]bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	skips := map[string]bool{}
	for i, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) < 4 || strings.TrimSpace(f[3]) == "" {
			return nil, fmt.Errorf("%s:%d: want file, function, check and reason separated by tabs", path, i+1)
		}
		skips[f[0]+"\t"+f[1]+"\t"+f[2]] = true
	}
	return skips, nil
}

// findMutants parses the non-test files of pkg and returns their checks.
func findMutants(pkg string, only []string, all bool) ([]*mutant, error) {
	paths, err := filepath.Glob(filepath.Join(pkg, "*.go"))
	if err != nil {
		return nil, err
	}
	var ms []*mutant
	for _, path := range paths {
		base := filepath.Base(path)
		if strings.HasSuffix(base, "_test.go") || (len(only) > 0 && !slices.Contains(only, base)) {
			continue
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, src, parser.ParseComments)
		if err != nil {
			return nil, err
		}
		v := &visitor{pkg: pkg, path: path, fset: fset, src: src, all: all, skip: skipLines(fset, f)}
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Body != nil {
				v.funcName = fd.Name.Name
				v.fn(fd.Type, fd.Body)
			}
		}
		ms = append(ms, v.out...)
	}
	return ms, nil
}

// skipLines returns the lines of `mutants:skip` comments.
func skipLines(fset *token.FileSet, f *ast.File) map[int]bool {
	lines := map[int]bool{}
	for _, cg := range f.Comments {
		for _, c := range cg.List {
			if strings.Contains(c.Text, "mutants:skip") {
				lines[fset.Position(c.Pos()).Line] = true
			}
		}
	}
	return lines
}

type visitor struct {
	pkg, path string
	fset      *token.FileSet
	src       []byte
	all       bool
	skip      map[int]bool
	funcName  string
	out       []*mutant
}

// fn visits the body of a function of type ft.
func (v *visitor) fn(ft *ast.FuncType, body *ast.BlockStmt) {
	v.block(body.List, returnsError(ft))
}

// returnsError reports whether ft's last result is of type error.
func returnsError(ft *ast.FuncType) bool {
	if ft.Results == nil || len(ft.Results.List) == 0 {
		return false
	}
	id, ok := ft.Results.List[len(ft.Results.List)-1].Type.(*ast.Ident)
	return ok && id.Name == "error"
}

// block visits a statement list; errFn says whether the enclosing
// function returns an error.
func (v *visitor) block(list []ast.Stmt, errFn bool) {
	for i, s := range list {
		var prev ast.Stmt
		if i > 0 {
			prev = list[i-1]
		}
		v.stmt(s, prev, errFn)
	}
}

func (v *visitor) stmt(s ast.Stmt, prev ast.Stmt, errFn bool) {
	switch s := s.(type) {
	case *ast.BlockStmt:
		v.block(s.List, errFn)
	case *ast.LabeledStmt:
		v.stmt(s.Stmt, prev, errFn)
	case *ast.IfStmt:
		v.ifStmt(s, prev, errFn)
	case *ast.ForStmt:
		v.exprs(s.Init, s.Cond, s.Post)
		v.block(s.Body.List, errFn)
	case *ast.RangeStmt:
		v.exprs(s.X)
		v.block(s.Body.List, errFn)
	case *ast.SwitchStmt:
		v.exprs(s.Init, s.Tag)
		v.clauses(s.Body, errFn)
	case *ast.TypeSwitchStmt:
		v.exprs(s.Init, s.Assign)
		v.clauses(s.Body, errFn)
	case *ast.SelectStmt:
		for _, c := range s.Body.List {
			v.block(c.(*ast.CommClause).Body, errFn)
		}
	default:
		v.exprs(s)
	}
}

// exprs visits the function literals in nodes, which have their own
// result types.
func (v *visitor) exprs(nodes ...ast.Node) {
	for _, n := range nodes {
		if n == nil {
			continue
		}
		ast.Inspect(n, func(n ast.Node) bool {
			if fl, ok := n.(*ast.FuncLit); ok {
				v.fn(fl.Type, fl.Body)
				return false
			}
			return true
		})
	}
}

func (v *visitor) clauses(body *ast.BlockStmt, errFn bool) {
	for _, c := range body.List {
		cc := c.(*ast.CaseClause)
		if cc.List == nil && errFn && len(cc.Body) > 0 && returnsErr(cc.Body) && !v.skipped(cc.Pos()) {
			start, end := v.off(cc.Body[0].Pos()), v.off(cc.Body[len(cc.Body)-1].End())
			v.add("default", cc.Pos(), start, end, "default: "+oneLine(v.src[start:end]))
		}
		v.block(cc.Body, errFn)
	}
}

func (v *visitor) ifStmt(s *ast.IfStmt, prev ast.Stmt, errFn bool) {
	v.exprs(s.Init, s.Cond)
	if errFn && returnsErr(s.Body.List) && !v.skipped(s.Pos()) && v.isCheck(s, prev) {
		ops := orOperands(s.Cond)
		kind := "if"
		if len(ops) > 1 {
			kind = "or"
		}
		for _, op := range ops {
			start, end := v.off(op.Pos()), v.off(op.End())
			text := string(v.src[start:end])
			v.add(kind, op.Pos(), start, end, "if "+oneLine([]byte(text)))
		}
	}
	v.block(s.Body.List, errFn)
	if s.Else != nil {
		v.stmt(s.Else, nil, errFn)
	}
}

// isCheck reports whether the if statement s is a validation check and
// not plain error propagation (see the package comment).
func (v *visitor) isCheck(s *ast.IfStmt, prev ast.Stmt) bool {
	if !isErrNotNil(s.Cond) || v.all {
		return true
	}
	as, ok := s.Init.(*ast.AssignStmt)
	if !ok {
		as, ok = prev.(*ast.AssignStmt)
	}
	return ok && len(as.Lhs) == 1 && len(as.Rhs) == 1
}

func isErrNotNil(e ast.Expr) bool {
	b, ok := e.(*ast.BinaryExpr)
	if !ok || b.Op != token.NEQ {
		return false
	}
	x, ok1 := b.X.(*ast.Ident)
	y, ok2 := b.Y.(*ast.Ident)
	return ok1 && ok2 && y.Name == "nil" && strings.HasSuffix(strings.ToLower(x.Name), "err")
}

// orOperands splits a condition at its top-level ||.
func orOperands(e ast.Expr) []ast.Expr {
	if p, ok := e.(*ast.ParenExpr); ok {
		return orOperands(p.X)
	}
	if b, ok := e.(*ast.BinaryExpr); ok && b.Op == token.LOR {
		return append(orOperands(b.X), orOperands(b.Y)...)
	}
	return []ast.Expr{e}
}

// returnsErr reports whether list has a return statement, at its top
// level, whose last result is not nil.
func returnsErr(list []ast.Stmt) bool {
	for _, s := range list {
		r, ok := s.(*ast.ReturnStmt)
		if !ok || len(r.Results) == 0 {
			continue
		}
		if id, ok := r.Results[len(r.Results)-1].(*ast.Ident); ok && id.Name == "nil" {
			continue
		}
		return true
	}
	return false
}

func (v *visitor) skipped(pos token.Pos) bool {
	l := v.fset.Position(pos).Line
	return v.skip[l] || v.skip[l-1]
}

func (v *visitor) off(p token.Pos) int { return v.fset.Position(p).Offset }

func (v *visitor) add(kind string, pos token.Pos, start, end int, text string) {
	v.out = append(v.out, &mutant{
		pkg: v.pkg, file: filepath.ToSlash(v.path), fn: v.funcName, line: v.fset.Position(pos).Line,
		kind: kind, start: start, end: end, orig: string(v.src[start:end]), text: text,
	})
}

var spaces = regexp.MustCompile(`\s+`)

func oneLine(b []byte) string {
	s := spaces.ReplaceAllString(string(b), " ")
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}

func indent(b []byte) string {
	return "\t" + strings.ReplaceAll(strings.TrimSpace(string(b)), "\n", "\n\t")
}

func split(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "mutants: "+format+"\n", args...)
	os.Exit(2)
}
