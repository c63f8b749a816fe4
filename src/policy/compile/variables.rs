//! Variables and constants: `exportVariables` and `exportConstants` sets compiled once,
//! and each policy's environment (imports, local definitions, redefinitions, cycles).

use super::*;

impl<'a> Compiler<'a> {
    /// A variable definition: its name checked, its expression parsed and checked.
    pub(super) fn variable(
        &mut self,
        name: &str,
        text: &model::ExprText,
        spans: &model::DefinitionSpan,
        origin: String,
    ) -> VarDef {
        self.check_identifier(name, &spans.name, CompileErrorKind::InvalidVariableName);
        let expr = self.parse_and_check(text, &text.span);
        let (mut variables, mut constants) = (Vec::new(), Vec::new());
        if let Some(e) = &expr {
            host_refs(e, &mut variables, &mut constants);
        }
        VarDef {
            expr,
            span: text.span.clone(),
            origin,
            variables,
            constants,
        }
    }

    /// An `exportVariables` set, compiled once.
    pub(super) fn export_variables(&mut self, name: &str) -> Option<VariableSet> {
        if let Some(done) = self.export_variables.get(name) {
            return done.clone();
        }
        let fqn = ImportKind::Variables.fqn(name);
        let compiled = match self.by_fqn.get(&fqn).map(|p| &p.kind) {
            Some(PolicyKind::ExportVariables(ev)) => {
                let mut defs = Vec::with_capacity(ev.definitions.len());
                for (var, text, spans) in ev.definitions.iter_spanned() {
                    let def = self.variable(var, text, spans, String::new());
                    defs.push((var.to_owned(), def));
                }
                Some(Rc::new(defs))
            }
            _ => None,
        };
        self.export_variables
            .insert(name.to_owned(), compiled.clone());
        compiled
    }

    /// An `exportConstants` set, compiled once.
    pub(super) fn export_constants(&mut self, name: &str) -> Option<ConstantSet> {
        if let Some(done) = self.export_constants.get(name) {
            return done.clone();
        }
        let fqn = ImportKind::Constants.fqn(name);
        let compiled = match self.by_fqn.get(&fqn).map(|p| &p.kind) {
            Some(PolicyKind::ExportConstants(ec)) => {
                let mut defs = Vec::with_capacity(ec.definitions.len());
                for (constant, value, spans) in ec.definitions.iter_spanned() {
                    self.check_identifier(
                        constant,
                        &spans.name,
                        CompileErrorKind::InvalidConstantName,
                    );
                    defs.push((
                        constant.to_owned(),
                        ConstDef {
                            value: from_json(value),
                            span: spans.value.clone(),
                        },
                    ));
                }
                Some(Rc::new(defs))
            }
            _ => None,
        };
        self.export_constants
            .insert(name.to_owned(), compiled.clone());
        compiled
    }

    /// Builds the variable and constant environment of a policy, reporting bad names,
    /// missing imports, redefinitions, undefined references and cycles.
    pub(super) fn env(
        &mut self,
        policy: &'a Policy,
        variables: Option<&'a model::Variables>,
        constants: Option<&'a model::Constants>,
    ) -> Env {
        let mut env = Env {
            uses_request: self.uses_request.clone(),
            uses_runtime: self.uses_runtime.clone(),
            ..Env::default()
        };

        self.env_constants(policy, constants, &mut env);
        self.env_variables(policy, variables, &mut env);
        self.resolve_variables(&mut env);
        env
    }

    /// The constants of a policy's environment: imported then local, in definition
    /// order, redefinitions reported.
    fn env_constants(
        &mut self,
        policy: &'a Policy,
        constants: Option<&'a model::Constants>,
        env: &mut Env,
    ) {
        // Constants: (name, value, where, origin) in definition order.
        let mut consts: Vec<(String, ConstDef, String)> = Vec::new();
        if let Some(c) = constants {
            for import in &c.import {
                match self.export_constants(&import.value) {
                    Some(set) => consts.extend(set.iter().map(|(name, def)| {
                        (
                            name.clone(),
                            def.clone(),
                            format!("import '{}'", import.value),
                        )
                    })),
                    None => self.import_not_found(ImportKind::Constants, import),
                }
            }
            for (name, value, spans) in c.local.iter_spanned() {
                self.check_identifier(name, &spans.name, CompileErrorKind::InvalidConstantName);
                consts.push((
                    name.to_owned(),
                    ConstDef {
                        value: from_json(value),
                        span: spans.value.clone(),
                    },
                    "policy local constants".to_owned(),
                ));
            }
        }
        self.redefinitions(
            policy,
            consts.iter().map(|(n, d, o)| (n, &d.span, o)),
            CompileErrorKind::ConstantRedefined,
            "Constant",
        );
        for (name, def, _) in consts {
            env.constants.insert(name, def.value);
        }
    }

    /// The variables of a policy's environment: imported, local, then the deprecated
    /// top-level ones, redefinitions reported.
    fn env_variables(
        &mut self,
        policy: &'a Policy,
        variables: Option<&'a model::Variables>,
        env: &mut Env,
    ) {
        let mut vars: Vec<(String, VarDef)> = Vec::new();
        if let Some(v) = variables {
            for import in &v.import {
                match self.export_variables(&import.value) {
                    Some(set) => vars.extend(set.iter().map(|(name, def)| {
                        let mut def = def.clone();
                        def.origin = format!("import '{}'", import.value);
                        (name.clone(), def)
                    })),
                    None => self.import_not_found(ImportKind::Variables, import),
                }
            }
            for (name, text, spans) in v.local.iter_spanned() {
                let def = self.variable(name, text, spans, "policy local variables".to_owned());
                vars.push((name.to_owned(), def));
            }
        }
        for (name, text, spans) in policy.variables.iter_spanned() {
            let origin = "deprecated top-level policy variables".to_owned();
            let def = self.variable(name, text, spans, origin);
            vars.push((name.to_owned(), def));
        }
        self.redefinitions(
            policy,
            vars.iter().map(|(n, d)| (n, &d.span, &d.origin)),
            CompileErrorKind::VariableRedefined,
            "Variable",
        );
        for (name, def) in vars {
            env.variables.insert(name, def);
        }
    }

    /// Reports names defined more than once: `Variable 'x' has multiple definitions in
    /// import 'a' (file:1:2) and policy local variables (file:3:4)`.
    pub(super) fn redefinitions<'d>(
        &mut self,
        policy: &Policy,
        defs: impl Iterator<Item = (&'d String, &'d Span, &'d String)>,
        kind: CompileErrorKind,
        what: &str,
    ) {
        let mut order: Vec<&String> = Vec::new();
        let mut places: HashMap<&String, Vec<String>> = HashMap::new();
        for (name, span, origin) in defs {
            let list = places.entry(name).or_default();
            if list.is_empty() {
                order.push(name);
            }
            list.push(format!("{origin} ({span})"));
        }
        for name in order {
            let list = &places[name];
            if list.len() > 1 {
                let message = format!(
                    "{what} '{name}' has multiple definitions in {}",
                    english_list(list)
                );
                self.error(&policy.span, kind, message);
            }
        }
    }

    /// Reports variables referring to undefined names, to themselves or in cycles, and
    /// marks those that must not be inlined.
    pub(super) fn resolve_variables(&mut self, env: &mut Env) {
        let mut names: Vec<String> = env.variables.keys().cloned().collect();
        names.sort();
        let position: HashMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let mut edges: Vec<Vec<usize>> = vec![Vec::new(); names.len()];
        for (i, name) in names.iter().enumerate() {
            let def = &env.variables[name];
            if def.expr.is_none() {
                env.broken.insert(name.clone());
            }
            for constant in &def.constants {
                if !env.constants.contains_key(constant) {
                    self.errors.push(CompileError {
                        span: def.span.clone(),
                        kind: CompileErrorKind::UndefinedConstant,
                        message: format!(
                            "Undefined constant '{constant}' referenced in variable '{name}'"
                        ),
                    });
                }
            }
            for var in &def.variables {
                if var == name {
                    self.errors.push(CompileError {
                        span: def.span.clone(),
                        kind: CompileErrorKind::CyclicalVariables,
                        message: format!("Variable '{name}' references itself"),
                    });
                    env.broken.insert(name.clone());
                } else if let Some(&j) = position.get(var.as_str()) {
                    edges[i].push(j);
                } else {
                    self.errors.push(CompileError {
                        span: def.span.clone(),
                        kind: CompileErrorKind::UndefinedVariable,
                        message: format!(
                            "Undefined variable '{var}' referenced in variable '{name}'"
                        ),
                    });
                }
            }
        }
        for mut cycle in cycles(&edges) {
            cycle.sort_unstable();
            let parts: Vec<String> = cycle
                .iter()
                .map(|&i| format!("'{}' ({})", names[i], env.variables[&names[i]].span))
                .collect();
            let span = env.variables[&names[cycle[0]]].span.clone();
            self.error(
                &span,
                CompileErrorKind::CyclicalVariables,
                format!("Variables {} form a cycle", english_list(&parts)),
            );
            env.broken.extend(cycle.iter().map(|&i| names[i].clone()));
        }
    }
}
