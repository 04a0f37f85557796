//! Finds the state a script keeps across rows, with a real JavaScript parser (oxc).
//!
//! Each worker of a `JavaScriptTransform` owns its own engine, so its own globals: a script
//! that remembers something between rows (a dedup `Set`, a running counter) sees only the
//! rows of its worker, and its output depends on how chunks were spread over workers.
//!
//! # The rule
//! A script is *stateful* when
//! - its top level declares a `let` or `var` binding (except one initialised with a
//!   function, which a function that assigns to it is caught by the next rules),
//! - its top level declares a `const` initialised with something mutable: an object or
//!   array literal, `new ...`, a call, a tagged template, or a `/g` or `/y` regular
//!   expression (its `lastIndex` changes),
//! - a function assigns to (or increments) a name it does not declare itself, other than a
//!   top-level `const` (an implicit global, or a top-level binding),
//! - a function (its body or a default parameter) assigns to a property of anything but a
//!   local binding of an enclosing function: `process.cache = …` (a property of a function
//!   lives as long as the function), `seen.x = …` with a global `seen`, `globalThis.x = …`,
//!   or `this.x = …` outside a class,
//! - the top level assigns to a property of the global object (`globalThis`, `this`,
//!   `window`, `self`), or
//! - anything calls `Object.defineProperty`, `Object.defineProperties`, `Object.assign`,
//!   `Reflect.set` or `Reflect.defineProperty` on the global object.
//!
//! The analysis is syntactic and errs on the side of "stateful": the price of a false
//! positive is running on one worker (and a note saying why), the price of a false negative
//! is silently different output.

use std::collections::HashSet;
use std::fmt;

use oxc_allocator::Allocator;
use oxc_ast::ast::{
    CallExpression, Expression, FormalParameters, FunctionBody, RegExpFlags, SimpleAssignmentTarget, Statement, VariableDeclarationKind,
};
use oxc_ast::AstKind;
use oxc_ast_visit::{walk, Visit};
use oxc_parser::Parser;
use oxc_span::{GetSpan, SourceType, Span};

/// One piece of state a script keeps across rows: the binding (or assignment target), its
/// line in the script (1-based) and why it counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StateBinding {
    /// The binding's name, or the assignment target as written (`globalThis.total`).
    pub name: String,
    /// 1-based line of the script.
    pub line: usize,
    /// Why it is state, e.g. "a top-level `let`".
    pub why: &'static str,
}

impl fmt::Display for StateBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` (script line {}: {})", self.name, self.line, self.why)
    }
}

/// The state `script` keeps across rows, in source order; empty for a stateless script and
/// for one that does not parse (it fails to load anyway).
pub(crate) fn find_state(script: &str) -> Vec<StateBinding> {
    let allocator = Allocator::default();
    let parsed = Parser::new(&allocator, script, SourceType::cjs()).parse();
    if parsed.panicked || !parsed.errors.is_empty() {
        return Vec::new();
    }
    let line_of = |span: Span| script[..(span.start as usize).min(script.len())].matches('\n').count() + 1;
    let mut found = Vec::new();
    let mut top_consts = HashSet::new();
    for statement in &parsed.program.body {
        let Statement::VariableDeclaration(d) = statement else {
            continue;
        };
        for decl in &d.declarations {
            let names = decl.id.get_binding_identifiers();
            let why = match d.kind {
                VariableDeclarationKind::Var | VariableDeclarationKind::Let => {
                    let function = decl.init.as_ref().is_some_and(|e| {
                        matches!(
                            e.without_parentheses(),
                            Expression::FunctionExpression(_) | Expression::ArrowFunctionExpression(_)
                        )
                    });
                    (!function).then_some(if d.kind == VariableDeclarationKind::Var {
                        "a top-level `var`"
                    } else {
                        "a top-level `let`"
                    })
                }
                _ => {
                    for n in &names {
                        top_consts.insert(n.name.to_string());
                    }
                    decl.init
                        .as_ref()
                        .filter(|e| is_mutable(e))
                        .map(|_| "a top-level `const` holding a mutable object")
                }
            };
            if let Some(why) = why {
                for n in names {
                    found.push(StateBinding {
                        name: n.name.to_string(),
                        line: line_of(n.span),
                        why,
                    });
                }
            }
        }
    }
    let mut assigns = Assigns {
        source: script,
        scopes: Vec::new(),
        classes: 0,
        top_consts: &top_consts,
        found: Vec::new(),
    };
    assigns.visit_program(&parsed.program);
    for (name, span, why) in assigns.found {
        let line = line_of(span);
        if !found.iter().any(|b| b.name == name && b.line == line) {
            found.push(StateBinding { name, line, why });
        }
    }
    found.sort_by_key(|b| b.line);
    found
}

/// An initialiser whose value can change after it is bound.
fn is_mutable(e: &Expression<'_>) -> bool {
    match e.without_parentheses() {
        Expression::ObjectExpression(_)
        | Expression::ArrayExpression(_)
        | Expression::NewExpression(_)
        | Expression::CallExpression(_)
        | Expression::TaggedTemplateExpression(_) => true,
        Expression::RegExpLiteral(r) => r.regex.flags.intersects(RegExpFlags::G | RegExpFlags::Y),
        Expression::ConditionalExpression(c) => is_mutable(&c.consequent) || is_mutable(&c.alternate),
        Expression::LogicalExpression(l) => is_mutable(&l.left) || is_mutable(&l.right),
        Expression::SequenceExpression(s) => s.expressions.last().is_some_and(is_mutable),
        _ => false,
    }
}

/// Finds assignments inside functions to names the function does not declare, and to
/// `this.x` / `globalThis.x`.
struct Assigns<'s> {
    source: &'s str,
    /// Names declared by each enclosing function (params and body, not nested functions),
    /// and the function's own name (not a local binding for a property set on it).
    scopes: Vec<(HashSet<String>, Option<String>)>,
    /// Depth of enclosing classes (`this` there is an instance, not the global object).
    classes: usize,
    top_consts: &'s HashSet<String>,
    /// (target as written, where, why).
    found: Vec<(String, Span, &'static str)>,
}

impl Assigns<'_> {
    fn enter_function(&mut self, id: Option<&str>, params: &FormalParameters<'_>, body: Option<&FunctionBody<'_>>) {
        let mut b = Bindings::default();
        b.visit_formal_parameters(params);
        if let Some(body) = body {
            b.visit_function_body(body);
        }
        self.scopes.push((b.names, id.map(str::to_owned)));
    }

    /// Whether `name` is declared by an enclosing function (its own name included when
    /// `own_name` is true).
    fn declared(&self, name: &str, own_name: bool) -> bool {
        self.scopes
            .iter()
            .any(|(names, own)| names.contains(name) || (own_name && own.as_deref() == Some(name)))
    }

    /// Whether `e` is the global object: `globalThis`, `window`, `self`, or `this` outside
    /// a class.
    fn is_global_object(&self, e: &Expression<'_>) -> bool {
        match e.without_parentheses() {
            Expression::ThisExpression(_) => self.classes == 0,
            Expression::Identifier(i) => {
                matches!(i.name.as_str(), "globalThis" | "window" | "self") && !self.declared(i.name.as_str(), true)
            }
            _ => false,
        }
    }

    fn text(&self, span: Span) -> String {
        let t = self.source.get(span.start as usize..span.end as usize).unwrap_or_default();
        let mut end = t.len().min(60);
        while !t.is_char_boundary(end) {
            end -= 1;
        }
        t[..end].to_owned()
    }
}

impl<'a> Visit<'a> for Assigns<'_> {
    fn enter_node(&mut self, kind: AstKind<'a>) {
        match kind {
            AstKind::Function(f) => self.enter_function(f.id.as_ref().map(|i| i.name.as_str()), &f.params, f.body.as_deref()),
            AstKind::ArrowFunctionExpression(a) => self.enter_function(None, &a.params, Some(&a.body)),
            AstKind::Class(_) => self.classes += 1,
            _ => {}
        }
    }

    fn leave_node(&mut self, kind: AstKind<'a>) {
        match kind {
            AstKind::Function(_) | AstKind::ArrowFunctionExpression(_) => {
                self.scopes.pop();
            }
            AstKind::Class(_) => self.classes -= 1,
            _ => {}
        }
    }

    fn visit_simple_assignment_target(&mut self, it: &SimpleAssignmentTarget<'a>) {
        if let SimpleAssignmentTarget::AssignmentTargetIdentifier(id) = it {
            let name = id.name.as_str();
            if !self.scopes.is_empty() && !self.declared(name, true) && !self.top_consts.contains(name) {
                self.found
                    .push((name.to_owned(), id.span, "assigned inside a function that does not declare it"));
            }
        } else if let Some(member) = it.as_member_expression() {
            let mut object = member.object();
            while let Some(inner) = object.without_parentheses().as_member_expression() {
                object = inner.object();
            }
            let why = if self.is_global_object(object) {
                Some(if self.scopes.is_empty() {
                    "a property of the global object set at the top level"
                } else {
                    "a property of the global object set inside a function"
                })
            } else {
                match object.without_parentheses() {
                    // A property of a function's own name, a global, or a top-level binding
                    // outlives the call.
                    Expression::Identifier(i) if !self.scopes.is_empty() && !self.declared(i.name.as_str(), false) => {
                        Some("a property of a binding the function does not declare, set inside a function")
                    }
                    _ => None,
                }
            };
            if let Some(why) = why {
                self.found.push((self.text(it.span()), it.span(), why));
            }
        }
        walk::walk_simple_assignment_target(self, it);
    }

    fn visit_call_expression(&mut self, it: &CallExpression<'a>) {
        let defines = [
            ("Object", "defineProperty"),
            ("Object", "defineProperties"),
            ("Object", "assign"),
            ("Reflect", "set"),
            ("Reflect", "defineProperty"),
        ]
        .iter()
        .any(|(o, p)| it.callee.without_parentheses().is_specific_member_access(o, p));
        if defines
            && it
                .arguments
                .first()
                .and_then(|a| a.as_expression())
                .is_some_and(|e| self.is_global_object(e))
        {
            self.found
                .push((self.text(it.span), it.span, "properties defined on the global object"));
        }
        walk::walk_call_expression(self, it);
    }
}

/// The names one function declares: its parameters and every binding of its body, without
/// descending into nested functions (their names are theirs).
#[derive(Default)]
struct Bindings {
    depth: usize,
    names: HashSet<String>,
}

impl<'a> Visit<'a> for Bindings {
    fn enter_node(&mut self, kind: AstKind<'a>) {
        match kind {
            AstKind::Function(f) => {
                // A nested function declaration binds its name here.
                if self.depth == 0 {
                    if let Some(id) = &f.id {
                        self.names.insert(id.name.to_string());
                    }
                }
                self.depth += 1;
            }
            AstKind::ArrowFunctionExpression(_) => self.depth += 1,
            _ => {}
        }
    }

    fn leave_node(&mut self, kind: AstKind<'a>) {
        if matches!(kind, AstKind::Function(_) | AstKind::ArrowFunctionExpression(_)) {
            self.depth -= 1;
        }
    }

    fn visit_binding_identifier(&mut self, it: &oxc_ast::ast::BindingIdentifier<'a>) {
        if self.depth == 0 {
            self.names.insert(it.name.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::find_state;

    fn names(script: &str) -> Vec<(String, usize)> {
        find_state(script).into_iter().map(|b| (b.name, b.line)).collect()
    }

    #[test]
    fn stateless_scripts_have_no_state() {
        for s in [
            "function process(context) { const row = context.input.current(); let x = row.id * 2; x++; context.output.setField('id', x); return true; }",
            "const LIMIT = 10;\nconst NAME = 'x';\nconst RE = /^a+$/i;\nfunction helper(a) { let b = a; b += 1; return b; }\nfunction process(context) { return helper(LIMIT) > 0; }",
            "var process = function (context) { return true; };",
            "class Acc { constructor() { this.n = 0; } add() { this.n++; } }\nfunction process(context) { const a = new Acc(); a.add(); return true; }",
            "function process(context) { for (const k of [1,2]) { let i = k; } const f = (y) => { let z = y; z = 2; return z; }; return f(1) > 0; }",
            "function process(context) { try { return true; } catch (e) { e = null; return false; } }",
        ] {
            assert_eq!(names(s), Vec::<(String, usize)>::new(), "{s}");
        }
    }

    #[test]
    fn top_level_bindings_and_global_assignments_are_state() {
        let s = "const seen = new Set();\nvar count = 0;\nlet last;\nconst cache = {};\nconst RE = /x/g;\nfunction process(context) {\n  total = (typeof total === 'number' ? total : 0) + 1;\n  globalThis.hits = 1;\n  this.calls = 2;\n  return true;\n}";
        assert_eq!(
            names(s),
            vec![
                ("seen".to_owned(), 1),
                ("count".to_owned(), 2),
                ("last".to_owned(), 3),
                ("cache".to_owned(), 4),
                ("RE".to_owned(), 5),
                ("total".to_owned(), 7),
                ("globalThis.hits".to_owned(), 8),
                ("this.calls".to_owned(), 9),
            ]
        );
    }

    #[test]
    fn state_on_the_global_object_or_on_functions_is_state() {
        for (s, name, line) in [
            (
                "globalThis.seen = new Set();\nfunction process(c) { if (seen.has(c.input.current().a)) return false; seen.add(c.input.current().a); return true; }",
                "globalThis.seen",
                1,
            ),
            ("this.s = {};\nfunction process(c) { return true; }", "this.s", 1),
            ("\nwindow.s = {};\nfunction process(c) { return true; }", "window.s", 2),
            (
                "Object.defineProperty(globalThis, 's', { value: {} });\nfunction process(c) { return true; }",
                "Object.defineProperty(globalThis, 's', { value: {} })",
                1,
            ),
            (
                "function process(c) {\n  Object.assign(globalThis, { s: 1 });\n  return true;\n}",
                "Object.assign(globalThis, { s: 1 })",
                2,
            ),
            (
                "function process(c) {\n  process.s = process.s || {};\n  return true;\n}",
                "process.s",
                2,
            ),
            (
                "function process(c, s = process.cache || (process.cache = {})) {\n  return true;\n}",
                "process.cache",
                1,
            ),
            (
                "function process(c) {\n  seen[c.input.current().a] = true;\n  return true;\n}",
                "seen[c.input.current().a]",
                2,
            ),
            (
                "const f = () => {\n  f.n = (f.n || 0) + 1;\n};\nfunction process(c) { f(); return true; }",
                "f.n",
                2,
            ),
        ] {
            let found = find_state(s);
            assert!(
                found.iter().any(|b| b.name == name && b.line == line),
                "{s}: expected `{name}` on line {line}, found {found:?}"
            );
        }
    }

    #[test]
    fn mutating_locals_and_calling_the_context_stay_stateless() {
        for s in [
            "function process(c) { const o = {}; o.x = 1; o['y'] = 2; const a = []; a[0] = 1; c.output.setField('o', JSON.stringify(o)); return true; }",
            "function process(context) { const row = context.input.current(); if (row.a > 1) context.route.send('big'); context.route.sendCopy('all'); return true; }",
            "function process(context) { const o = { n: 0 }; [1, 2].forEach((k) => { o.n += k; }); context.output.setField('n', o.n); return true; }",
            "function helper(out) { out.total = 1; return out; }\nfunction process(c) { return helper({}).total === 1; }",
            "class Acc { constructor() { this.n = 0; } add() { this.n++; } }\nfunction process(c) { const a = new Acc(); a.add(); return true; }",
            "function process(c) { const o = {}; Object.assign(o, { a: 1 }); Object.defineProperty(o, 'b', { value: 2 }); return true; }",
        ] {
            assert_eq!(names(s), Vec::<(String, usize)>::new(), "{s}");
        }
    }

    #[test]
    fn a_broken_script_is_left_to_the_loader() {
        assert!(find_state("function process(context) { return true; ").is_empty());
    }
}
