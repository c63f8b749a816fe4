//! Expressions, conditions, outputs and globs, compiled against a policy's environment.

use super::*;

impl Compiler<'_> {
    /// Compiles one expression against an environment: parse and check errors as
    /// `invalid expression` at the expression, then undefined variables and constants.
    pub(super) fn expr(&mut self, text: &model::ExprText, env: &Env) -> Option<CompiledExpr> {
        let parsed = match parse_expr(&text.text) {
            Ok(e) => e,
            Err(problems) => {
                self.invalid_expression(text, &text.span, &problems.join(", "));
                return None;
            }
        };
        let mut problems = cel::check::type_problems(&parsed);
        problems.extend(host_index_problems(&parsed));
        if !problems.is_empty() {
            self.invalid_expression(text, &text.span, &problems.join(", "));
            return None;
        }
        let program = match cel::compile(&parsed, env) {
            Ok(p) => p,
            Err(e) => {
                self.invalid_expression(text, &text.span, &e.message);
                return None;
            }
        };
        // Cerbos evaluates the program of the constant-folded expression.
        let folded = cel::fold::folded(&parsed);
        let program = folded
            .as_ref()
            .and_then(|f| cel::compile(f, env).ok())
            .unwrap_or(program);
        self.undefined_host_refs(&parsed, text, env);
        Some(CompiledExpr {
            program,
            plan: Arc::new(crate::cel::inline::inline_host(&parsed, env)),
            plan_error: cel::fold::plan_error_of(folded.as_ref().unwrap_or(&parsed)).map(Arc::from),
            source: Arc::from(text.text.as_str()),
            span: text.span.clone(),
        })
    }

    /// Reports the variables the expression uses that the environment does not define, and
    /// the undefined constants used by it or by the variables it uses (at their definition).
    fn undefined_host_refs(&mut self, parsed: &Expr, text: &model::ExprText, env: &Env) {
        let (mut variables, mut constants) = (Vec::new(), Vec::new());
        host_refs(parsed, &mut variables, &mut constants);
        let mut used: Vec<&str> = Vec::new();
        let mut todo: Vec<&str> = Vec::new();
        for var in &variables {
            if env.variables.contains_key(var) {
                todo.push(var);
            } else {
                self.error(
                    &text.span,
                    CompileErrorKind::UndefinedVariable,
                    format!("Undefined variable '{var}'"),
                );
            }
        }
        while let Some(var) = todo.pop() {
            if used.contains(&var) {
                continue;
            }
            used.push(var);
            let def = &env.variables[var];
            for constant in &def.constants {
                if !env.constants.contains_key(constant) {
                    self.error(
                        &def.span,
                        CompileErrorKind::UndefinedConstant,
                        format!("Undefined constant '{constant}'"),
                    );
                }
            }
            todo.extend(
                def.variables
                    .iter()
                    .filter(|v| env.variables.contains_key(*v))
                    .map(String::as_str),
            );
        }
        for constant in &constants {
            if !env.constants.contains_key(constant) {
                self.error(
                    &text.span,
                    CompileErrorKind::UndefinedConstant,
                    format!("Undefined constant '{constant}'"),
                );
            }
        }
    }

    /// A rule condition; `None` (after reporting) when it does not compile. A `script`
    /// condition is an error, never "no condition".
    pub(super) fn condition(&mut self, c: &model::Condition, env: &Env) -> Option<Condition> {
        match c {
            model::Condition::Match(m) => self.match_block(m, env),
            model::Condition::Script { span, .. } => {
                self.error(
                    span,
                    CompileErrorKind::ScriptCondition,
                    "Unsupported feature",
                );
                None
            }
        }
    }

    pub(super) fn match_block(&mut self, m: &Match, env: &Env) -> Option<Condition> {
        Some(match m {
            Match::Expr(t) => Condition::Expr(self.expr(t, env)?),
            Match::All(items) => Condition::All(self.match_list(items, env)?),
            Match::Any(items) => Condition::Any(self.match_list(items, env)?),
            Match::None(items) => Condition::None(self.match_list(items, env)?),
        })
    }

    pub(super) fn match_list(&mut self, items: &[Match], env: &Env) -> Option<Vec<Condition>> {
        let mut ok = true;
        let mut out = Vec::with_capacity(items.len());
        for i in items {
            match self.match_block(i, env) {
                Some(c) => out.push(c),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// The optional condition of a rule: `Err` when it is present but does not compile.
    pub(super) fn rule_condition(
        &mut self,
        c: Option<&model::Condition>,
        env: &Env,
    ) -> Result<Option<Arc<Condition>>, ()> {
        match c {
            None => Ok(None),
            Some(c) => self.condition(c, env).map(|c| Some(Arc::new(c))).ok_or(()),
        }
    }

    pub(super) fn output(
        &mut self,
        o: Option<&model::Output>,
        env: &Env,
    ) -> Option<Arc<CompiledOutput>> {
        let o = o?;
        let when = o.when.as_ref();
        let activated = when
            .and_then(|w| w.rule_activated.as_ref())
            .or(o.expr.as_ref());
        let not_met = when.and_then(|w| w.condition_not_met.as_ref());
        if activated.is_none() && not_met.is_none() {
            self.error(
                &o.span,
                CompileErrorKind::EmptyOutput,
                "output must have at least one expression",
            );
            return None;
        }
        let out = CompiledOutput {
            rule_activated: activated.and_then(|e| self.expr(e, env)),
            condition_not_met: not_met.and_then(|e| self.expr(e, env)),
        };
        Some(Arc::new(out))
    }

    pub(super) fn glob(&mut self, pattern: &str, span: &Span) -> Glob {
        match Glob::new(pattern) {
            Ok(g) => g,
            Err(e) => {
                self.error(span, CompileErrorKind::InvalidGlob, e.to_string());
                Glob::Literal(pattern.into())
            }
        }
    }
}
