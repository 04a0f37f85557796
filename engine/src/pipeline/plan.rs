//! Planning: every check that needs no data. Connections become edges, steps are ordered
//! topologically, schemas propagate from sources to sinks, and every mistake in the DAG is a
//! plan error carrying the `file:line` of the step or connection at fault.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{ChannelConfig, PipelineConfig};
use crate::dead_letter::{OnError, ERRORS_OUTPUT};
use crate::error::{Error, Position, Result};
use crate::memory::{MemoryReservation, RunMemory};
use crate::metrics::StepMetrics;
use crate::pool::PoolStats;
use crate::schema::SchemaRef;
use crate::steps::{BuildContext, OutputId, PathRole, StepKind, StepRuntime};

/// One connection: an output of one step into another step.
pub(crate) struct Edge {
    pub from: usize,
    pub output: OutputId,
    pub to: usize,
    /// The input of `to` it feeds: `None` is the main input, `Some(name)` a named input
    /// (`To: Step.name`).
    pub input: Option<String>,
    pub channel: ChannelConfig,
    /// Index in `Connections` (`None` when the steps are chained implicitly).
    pub index: Option<usize>,
    pub at: Position,
}

impl Edge {
    /// How a connection names the input it feeds after the step: `""` or `.name`.
    pub fn input_suffix(&self) -> String {
        self.input.as_ref().map(|n| format!(".{n}")).unwrap_or_default()
    }

    /// `Connections[i]`, or the implicit chain.
    pub fn label(&self) -> String {
        self.index
            .map_or_else(|| "the implicit chain".to_owned(), |i| format!("Connections[{i}]"))
    }
}

/// A step built and checked, ready to run.
pub(crate) struct Planned {
    pub name: String,
    pub kind: StepKind,
    pub runtime: StepRuntime,
    pub output_schema: Option<SchemaRef>,
    pub outputs: Vec<OutputId>,
    /// The schema of its error output (`Step.errors`, [`crate::dead_letter::error_schema`]).
    pub error_schema: SchemaRef,
    /// Its connected named inputs, in the order the step reads them.
    pub named_inputs: Vec<String>,
    pub metrics: Arc<StepMetrics>,
    /// A source sending fewer columns than it declares (the steps it feeds read only
    /// those: [`read_columns`]).
    pub projected: bool,
}

/// The plan: built steps, edges between them, and an execution order.
pub(crate) struct Plan {
    pub steps: Vec<Planned>,
    pub edges: Vec<Edge>,
    pub order: Vec<usize>,
    pub memory: RunMemory,
    /// The ports' byte budgets, reserved from the run's pool for as long as the plan lives.
    pub port_reservations: Vec<MemoryReservation>,
    /// What the steps' buffer pools do during the run (`Settings.Engine.Pooling`).
    pub pool_stats: Arc<PoolStats>,
    /// The run's ports, for monitors (filled when the run wires them).
    pub ports: crate::port::PortBoard,
}

/// Builds the plan (see [`crate::Pipeline::build`] for the errors). With `project`, a
/// source feeding only steps that read some of its columns sends only those
/// ([`read_columns`]).
pub(crate) fn plan(config: &PipelineConfig, project: bool) -> Result<Plan> {
    let positions: Vec<Position> = config.steps.iter().map(|s| Position::new(&config.file, s.line)).collect();
    let index = step_index(config, &positions)?;
    let edges = edges(config, &index)?;
    check_inputs(config, &edges)?;
    check_dead_letter_outputs(config, &edges, &positions)?;
    check_paths(config, &positions)?;
    let order = topo_order(config, &edges, &positions)?;
    check_named_input_upstreams(config, &edges)?;
    let memory = RunMemory::new(&config.settings.memory);
    let mut edges = edges;
    let port_reservations = reserve_ports(config, &mut edges, &memory)?;
    let pool_stats = Arc::new(PoolStats::default());
    let steps = build_in_order(config, &edges, &order, &positions, &memory, &pool_stats, project)?;
    check_outputs(&steps, &edges, &positions)?;
    Ok(Plan {
        steps,
        edges,
        order,
        memory,
        port_reservations,
        pool_stats,
        ports: Default::default(),
    })
}

/// Ports take at most a quarter of the run's memory limit between them: each port's byte
/// budget is its `MaxBytes`, lowered to that share, and reserved from the pool now.
fn reserve_ports(config: &PipelineConfig, edges: &mut [Edge], memory: &RunMemory) -> Result<Vec<MemoryReservation>> {
    if edges.is_empty() {
        return Ok(Vec::new());
    }
    let share = (memory.pool.limit() / 4 / edges.len()).max(64 << 10);
    let mut out = Vec::with_capacity(edges.len());
    for e in edges.iter_mut() {
        e.channel.max_bytes = e.channel.max_bytes.min(share);
        let to = &config.steps[e.to].name;
        let r = memory
            .pool
            .reserve_fixed(
                to,
                "input port",
                e.channel.max_bytes,
                "raise the memory limit or lower MaxBytes of the connections",
            )
            .map_err(|err| match err {
                Error::ResourcesExhausted { step, message } => Error::plan_at(&e.at, step, message),
                other => other,
            })?;
        out.push(r);
    }
    Ok(out)
}

fn step_index<'a>(config: &'a PipelineConfig, positions: &[Position]) -> Result<HashMap<&'a str, usize>> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, s) in config.steps.iter().enumerate() {
        if s.name.trim().is_empty() {
            return Err(Error::plan_at(&positions[i], format!("#{}", i + 1), "a plugin has an empty Name"));
        }
        if let Some(first) = index.insert(s.name.as_str(), i) {
            return Err(Error::plan_at(
                &positions[i],
                &s.name,
                format!(
                    "two plugins are named '{}' (the other at line {}); names must be unique",
                    s.name, positions[first].line
                ),
            ));
        }
    }
    Ok(index)
}

/// Connections as edges; none at all means "chain in the order listed", as the original does.
fn edges(config: &PipelineConfig, index: &HashMap<&str, usize>) -> Result<Vec<Edge>> {
    let mut edges: Vec<Edge> = Vec::new();
    if config.connections.is_empty() {
        for i in 1..config.steps.len() {
            edges.push(Edge {
                from: i - 1,
                output: OutputId::Main,
                to: i,
                input: None,
                channel: config.settings.default_channel.clone(),
                index: None,
                at: Position::new(&config.file, config.steps[i].line),
            });
        }
        return Ok(edges);
    }
    let names: Vec<&str> = config.steps.iter().map(|s| s.name.as_str()).collect();
    for (ci, c) in config.connections.iter().enumerate() {
        let at = Position::new(&config.file, c.line);
        let label = format!("Connections[{ci}]");
        let find = |name: &str, what: &str| -> Result<usize> {
            index.get(name).copied().ok_or_else(|| {
                let best = crate::error::suggest(name, names.iter().copied());
                Error::plan_at(
                    &at,
                    &label,
                    format!(
                        "{what} '{name}' is not a plugin of this pipeline{}",
                        best.map(|n| format!(" (did you mean '{n}'?)")).unwrap_or_default()
                    ),
                )
            })
        };
        let (from, output) = match (&c.from_port, index.get(c.from.as_str())) {
            (Some(p), _) => (find(&c.from, "From")?, OutputId::from_name(p)),
            (None, Some(&i)) => (i, OutputId::Main),
            (None, None) => match c.from.rsplit_once('.') {
                Some((step, port)) if index.contains_key(step) => (index[step], OutputId::from_name(port)),
                _ => (find(&c.from, "From")?, OutputId::Main),
            },
        };
        // `To: Step` is the main input; `To: Step.input` (step names may contain dots: an
        // exact step name wins) or `ToPort: input` a named input.
        let (to, input) = match (&c.to_port, index.get(c.to.as_str())) {
            (Some(p), _) => (find(&c.to, "To")?, Some(p.clone())),
            (None, Some(&i)) => (i, None),
            (None, None) => match c.to.rsplit_once('.') {
                Some((step, port)) if index.contains_key(step) => {
                    (index[step], Some(port.to_owned()).filter(|p| !crate::steps::is_main_input(p)))
                }
                _ => (find(&c.to, "To")?, None),
            },
        };
        if from == to {
            return Err(Error::plan_at(&at, &c.to, "a connection from a step to itself is a cycle"));
        }
        if let Some(e) = edges
            .iter()
            .find(|e| e.from == from && e.to == to && e.output == output && e.input == input)
        {
            return Err(Error::plan_at(
                &at,
                &label,
                format!(
                    "the connection {} -> {} is listed twice ({} at line {}, and {label}); every row would be delivered twice — remove one",
                    c.from,
                    c.to,
                    e.label(),
                    e.at.line
                ),
            ));
        }
        edges.push(Edge {
            from,
            output,
            to,
            input,
            channel: c.channel.clone().unwrap_or_else(|| config.settings.default_channel.clone()),
            index: Some(ci),
            at,
        });
    }
    Ok(edges)
}

/// Every named input a connection feeds must be one its step lists
/// ([`crate::steps::StepSettings::input_names`]).
fn check_inputs(config: &PipelineConfig, edges: &[Edge]) -> Result<()> {
    for e in edges {
        let Some(input) = &e.input else { continue };
        let def = &config.steps[e.to];
        let known = def.config.input_names();
        if known.iter().any(|k| k == input) {
            continue;
        }
        let hint = crate::error::suggest(input, known.iter().map(String::as_str))
            .map(|k| format!(" (did you mean '{}.{k}'?)", def.name))
            .unwrap_or_default();
        let has = if known.is_empty() {
            format!("it has only its main input: connect To: {}", def.name)
        } else {
            format!(
                "its inputs: the main input ({}) and {}",
                def.name,
                known.iter().map(|k| format!("{}.{k}", def.name)).collect::<Vec<_>>().join(", ")
            )
        };
        return Err(Error::plan_at(
            &e.at,
            &def.name,
            format!(
                "{} goes to '{}.{input}', but '{}' ({}) has no input '{input}'{hint}; {has}",
                e.label(),
                def.name,
                def.name,
                def.config.type_name()
            ),
        ));
    }
    Ok(())
}

/// Steps from which `start` is reachable, `start` included.
fn upstream_of(start: usize, edges: &[Edge], n: usize) -> Vec<bool> {
    let mut seen = vec![false; n];
    let mut stack = vec![start];
    while let Some(i) = stack.pop() {
        if !std::mem::replace(&mut seen[i], true) {
            stack.extend(edges.iter().filter(|e| e.to == i).map(|e| e.from));
        }
    }
    seen
}

/// A step reads its named inputs to their end before its main input: when both descend from
/// one step, that step would block on the full main input while the named input waits for
/// rows it never gets (or lose rows, under a dropping `FullMode`). Refused with the shared step.
fn check_named_input_upstreams(config: &PipelineConfig, edges: &[Edge]) -> Result<()> {
    let n = config.steps.len();
    for e in edges.iter().filter(|e| e.input.is_some()) {
        let named = upstream_of(e.from, edges, n);
        for m in edges.iter().filter(|m| m.to == e.to && m.input.is_none()) {
            let main = upstream_of(m.from, edges, n);
            if let Some(shared) = (0..n).find(|&i| named[i] && main[i]) {
                let step = &config.steps[e.to].name;
                return Err(Error::plan_at(
                    &e.at,
                    step,
                    format!(
                        "the main input of '{step}' and its input '{}' both come from '{}'; '{step}' reads '{}' to its end before its main input, so '{}' would stall on the full main input — read the data twice (a second source) instead",
                        e.input.as_deref().unwrap_or_default(),
                        config.steps[shared].name,
                        e.input.as_deref().unwrap_or_default(),
                        config.steps[shared].name,
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Kahn's order; on a cycle, the error lists the steps that form one.
fn topo_order(config: &PipelineConfig, edges: &[Edge], positions: &[Position]) -> Result<Vec<usize>> {
    let n = config.steps.len();
    let mut indeg = vec![0usize; n];
    for e in edges {
        indeg[e.to] += 1;
    }
    let mut ready: VecDeque<usize> = (0..n).filter(|&i| indeg[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_front() {
        order.push(i);
        for e in edges.iter().filter(|e| e.from == i) {
            indeg[e.to] -= 1;
            if indeg[e.to] == 0 {
                ready.push_back(e.to);
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    let cycle = find_cycle(n, edges, &indeg);
    let names: Vec<&str> = cycle.iter().map(|&i| config.steps[i].name.as_str()).collect();
    let first = cycle.first().copied().unwrap_or(0);
    Err(Error::plan_at(
        &positions[first],
        names.first().copied().unwrap_or_default(),
        format!(
            "the connections form a cycle: {} -> {}; a pipeline must be a DAG — remove one of these connections",
            names.join(" -> "),
            names.first().copied().unwrap_or_default()
        ),
    ))
}

/// One cycle among the steps Kahn's algorithm could not order (all have `indeg > 0`): walk
/// backwards along edges between such steps until a step repeats.
fn find_cycle(n: usize, edges: &[Edge], indeg: &[usize]) -> Vec<usize> {
    let Some(start) = (0..n).find(|&i| indeg[i] > 0) else {
        return Vec::new();
    };
    let mut seen = vec![usize::MAX; n];
    let mut path = Vec::new();
    let mut cur = start;
    while seen[cur] == usize::MAX {
        seen[cur] = path.len();
        path.push(cur);
        // Every unordered step has an unordered predecessor.
        match edges.iter().find(|e| e.to == cur && indeg[e.from] > 0) {
            Some(e) => cur = e.from,
            None => return path,
        }
    }
    let mut cycle = path[seen[cur]..].to_vec();
    cycle.reverse();
    cycle
}

/// Builds each step in topological order, so that it sees its input schema.
fn build_in_order(
    config: &PipelineConfig,
    edges: &[Edge],
    order: &[usize],
    positions: &[Position],
    memory: &RunMemory,
    pool_stats: &Arc<PoolStats>,
    project: bool,
) -> Result<Vec<Planned>> {
    let mut built: Vec<Option<Planned>> = (0..config.steps.len()).map(|_| None).collect();
    for &i in order {
        let def = &config.steps[i];
        let at = &positions[i];
        let inputs: Vec<&Edge> = edges.iter().filter(|e| e.to == i && e.input.is_none()).collect();
        let input = input_schema(&def.name, &inputs, &built, at)?;
        let mut named_inputs = Vec::new();
        for name in def.config.input_names() {
            let feeding: Vec<&Edge> = edges.iter().filter(|e| e.to == i && e.input.as_ref() == Some(&name)).collect();
            if let Some(schema) = input_schema(&format!("{}.{name}", def.name), &feeding, &built, at)? {
                named_inputs.push((name, schema));
            }
        }
        let named: Vec<String> = named_inputs.iter().map(|(n, _)| n.clone()).collect();
        let ctx = BuildContext {
            name: &def.name,
            input: input.clone(),
            named_inputs,
            memory,
            engine: config.settings.engine,
            pool_stats: Arc::clone(pool_stats),
            pool_size: config.settings.memory_pools.chunk_pool,
            error_policy: def.config.error_policy().cloned(),
            read_columns: if project && inputs.is_empty() {
                read_columns(config, edges, i)
            } else {
                None
            },
        };
        let runtime = def.config.build(&ctx).map_err(|e| e.located(at, &def.name))?;
        let mut planned = planned(&def.name, runtime, at, input.as_ref())?;
        if let (StepRuntime::Transform(ts), false) = (&planned.runtime, named.is_empty()) {
            if ts.len() > 1 {
                return Err(Error::plan_at(
                    at,
                    &def.name,
                    format!(
                        "'{}' has named inputs ({}), which one instance reads before its main input; set Workers: 1",
                        def.name,
                        named.join(", ")
                    ),
                ));
            }
        }
        planned.named_inputs = named;
        match (planned.kind, inputs.is_empty()) {
            (StepKind::Source, false) => {
                return Err(Error::plan_at(
                    at,
                    &def.name,
                    format!(
                        "'{}' is a source ({}) and cannot take an input; remove the connection to it",
                        def.name,
                        def.config.type_name()
                    ),
                ))
            }
            (StepKind::Transform | StepKind::Sink, true) => {
                return Err(Error::plan_at(
                    at,
                    &def.name,
                    format!("'{}' has no input; add a connection To: {}", def.name, def.name),
                ))
            }
            _ => {}
        }
        built[i] = Some(planned);
    }
    built
        .into_iter()
        .map(|p| p.ok_or_else(|| Error::Internal("unbuilt step".into())))
        .collect()
}

/// The columns the steps fed by step `i`'s main output read, when each of them reads only
/// some ([`crate::steps::StepSettings::read_columns`]), takes that output alone on its main
/// input (a fan-in's schemas must agree) and has nothing on its error output (whose rows
/// would lack the other columns); `None` when no such step is fed, or a debug tap watches
/// step `i` (it shows what the step declares).
pub(crate) fn read_columns(config: &PipelineConfig, edges: &[Edge], i: usize) -> Option<Vec<String>> {
    let name = &config.steps[i].name;
    let tapped =
        |t: &crate::config::DebugTapConfig| t.step == *name || t.step.strip_prefix(name.as_str()).is_some_and(|r| r.starts_with('.'));
    if config.settings.debug_taps.iter().any(tapped) {
        return None;
    }
    let mut cols: Vec<String> = Vec::new();
    let mut fed = false;
    for e in edges.iter().filter(|e| e.from == i && e.output == OutputId::Main) {
        let alone = edges.iter().filter(|f| f.to == e.to && f.input.is_none()).count() == 1;
        let errors_used = edges.iter().any(|f| f.from == e.to && is_errors(&f.output));
        if e.input.is_some() || !alone || errors_used {
            return None;
        }
        for c in config.steps[e.to].config.read_columns()? {
            if !cols.contains(&c) {
                cols.push(c);
            }
        }
        fed = true;
    }
    fed.then_some(cols)
}

/// The schema a step receives: its inputs' schema, which must agree on fan-in.
fn input_schema(name: &str, inputs: &[&Edge], built: &[Option<Planned>], at: &Position) -> Result<Option<SchemaRef>> {
    let mut input: Option<SchemaRef> = None;
    for e in inputs {
        let up = built[e.from].as_ref().ok_or_else(|| Error::Internal("topological order".into()))?;
        let schema = if is_errors(&e.output) {
            Some(Arc::clone(&up.error_schema))
        } else {
            up.output_schema.clone()
        };
        let Some(schema) = schema else {
            return Err(Error::plan_at(
                &e.at,
                name,
                format!("'{}' is a sink and has no output to connect to '{name}'", up.name),
            ));
        };
        match &input {
            None => input = Some(schema),
            Some(first) => {
                if let Some(diff) = first.diff(&schema) {
                    return Err(Error::plan_at(
                        at,
                        name,
                        format!(
                            "schema mismatch on fan-in: '{}' ({}) sends {} but another input sends {}; {diff}",
                            up.name,
                            e.label(),
                            schema,
                            first
                        ),
                    ));
                }
            }
        }
    }
    Ok(input)
}

/// True for the error output (`Step.errors`).
fn is_errors(o: &OutputId) -> bool {
    matches!(o, OutputId::Named(n) if n == ERRORS_OUTPUT)
}

/// Kind, output schema, outputs (the error output last) and error schema of a built step;
/// refuses several instances of a transform that keeps state across chunks.
fn planned(name: &str, runtime: StepRuntime, at: &Position, input: Option<&SchemaRef>) -> Result<Planned> {
    let mut declared = None;
    let (kind, output_schema, mut outputs) = match &runtime {
        StepRuntime::Source(s) => {
            declared = Some(s.declared_schema());
            (StepKind::Source, Some(s.schema()), vec![OutputId::Main])
        }
        StepRuntime::Transform(ts) => {
            let t = ts
                .first()
                .ok_or_else(|| Error::plan_at(at, name, "a transform was built with no instances"))?;
            if ts.len() > 1 && !t.parallel_safe() {
                return Err(Error::plan_at(
                    at,
                    name,
                    format!(
                        "'{name}' keeps state across chunks, so it cannot run as {} instances (each would see part of the rows); set Workers: 1",
                        ts.len()
                    ),
                ));
            }
            let mut outs = vec![OutputId::Main];
            for extra in t.extra_outputs() {
                if extra == ERRORS_OUTPUT {
                    return Err(Error::plan_at(
                        at,
                        name,
                        format!("'{name}' declares an output named '{ERRORS_OUTPUT}', which is every step's error output; rename it"),
                    ));
                }
                outs.push(OutputId::Named(extra));
            }
            (StepKind::Transform, Some(t.output_schema()), outs)
        }
        StepRuntime::Sink(_) => (StepKind::Sink, None, Vec::new()),
    };
    outputs.push(OutputId::Named(ERRORS_OUTPUT.to_owned()));
    // A source's records are text until they parse; other steps' are their input rows.
    let projected = matches!((&declared, &output_schema), (Some(d), Some(o)) if d.fields().len() != o.fields().len());
    let error_schema = match (kind, input, &declared) {
        (StepKind::Source, _, Some(declared)) => crate::dead_letter::error_schema(&crate::dead_letter::text_fields(declared), true),
        (_, Some(input), _) => crate::dead_letter::error_schema(input, false),
        _ => crate::dead_letter::error_schema(&crate::schema::Schema::new(Vec::new()), false),
    };
    Ok(Planned {
        name: name.to_owned(),
        kind,
        runtime,
        output_schema,
        outputs,
        error_schema,
        named_inputs: Vec::new(),
        metrics: Arc::new(StepMetrics::default()),
        projected,
    })
}

/// `OnError: DeadLetter` promises that no rejected row is lost: the step's error output must
/// go somewhere (`DeadLetterFilePath`, which [`expand_dead_letters`] turned into a sink, or a
/// connection `From: Step.errors`).
fn check_dead_letter_outputs(config: &PipelineConfig, edges: &[Edge], positions: &[Position]) -> Result<()> {
    for (i, def) in config.steps.iter().enumerate() {
        let Some(p) = def.config.error_policy() else { continue };
        if p.on_error == OnError::DeadLetter && !edges.iter().any(|e| e.from == i && is_errors(&e.output)) {
            return Err(Error::plan_at(
                &positions[i],
                &def.name,
                format!(
                    "OnError: DeadLetter needs DeadLetterFilePath or a connection From: {}.{ERRORS_OUTPUT} to a sink (where rejected rows go); OnError: Skip drops them instead",
                    def.name
                ),
            ));
        }
    }
    Ok(())
}

/// `DeadLetterFilePath` is shorthand for a `DelimitedSink` on the step's error output: each
/// becomes a step named `<step>.DeadLetterFilePath` (at the step's line) and a connection
/// `From: <step>.errors`. Connections left implicit (none listed: the steps in file order)
/// are written out first, so the chain stays as it was.
pub(crate) fn expand_dead_letters(config: &mut PipelineConfig) {
    let added: Vec<(String, std::path::PathBuf, usize)> = config
        .steps
        .iter()
        .filter_map(|s| {
            let path = s.config.error_policy()?.dead_letter_sink()?;
            Some((s.name.clone(), path.to_path_buf(), s.line))
        })
        .collect();
    if added.is_empty() {
        return;
    }
    if config.connections.is_empty() {
        for w in config.steps.windows(2) {
            config.connections.push(crate::config::ConnectionConfig {
                from: w[0].name.clone(),
                from_port: None,
                to: w[1].name.clone(),
                to_port: None,
                channel: None,
                line: w[1].line,
            });
        }
    }
    for (step, path, line) in added {
        let sink = format!("{step}.DeadLetterFilePath");
        config.steps.push(crate::config::StepDef {
            name: sink.clone(),
            config: crate::steps::StepConfig::new(
                "DelimitedSink",
                crate::steps::delimited_sink::DelimitedSinkConfig {
                    file_path: path,
                    ..Default::default()
                },
            ),
            line,
        });
        config.connections.push(crate::config::ConnectionConfig {
            from: step,
            from_port: Some(ERRORS_OUTPUT.to_owned()),
            to: sink,
            to_port: None,
            channel: None,
            line,
        });
    }
}

/// Every output named in a connection must exist; every main output must go somewhere.
fn check_outputs(steps: &[Planned], edges: &[Edge], positions: &[Position]) -> Result<()> {
    for e in edges {
        let s = &steps[e.from];
        if !s.outputs.contains(&e.output) {
            let known: Vec<String> = s
                .outputs
                .iter()
                .filter_map(|o| match o {
                    OutputId::Named(n) => Some(n.clone()),
                    OutputId::Main => None,
                })
                .collect();
            let out = e.output.suffix();
            return Err(Error::plan_at(
                &e.at,
                &s.name,
                format!(
                    "connection from '{}{out}': '{}' has no output '{}' (its named outputs: {})",
                    s.name,
                    s.name,
                    out.trim_start_matches('.'),
                    if known.is_empty() { "none".into() } else { known.join(", ") }
                ),
            ));
        }
    }
    // A pipeline without any sink (the original's "source-only test") reads and discards
    // its rows (counted as dropped); config loading notes it.
    // Sinks fed only by error outputs do not count: the main rows would still go nowhere.
    let has_sink = steps
        .iter()
        .enumerate()
        .any(|(i, s)| s.kind == StepKind::Sink && edges.iter().any(|e| e.to == i && !is_errors(&e.output)));
    for (i, s) in steps.iter().enumerate() {
        if has_sink && s.kind != StepKind::Sink && !edges.iter().any(|e| e.from == i && e.output == OutputId::Main) {
            return Err(Error::plan_at(
                &positions[i],
                &s.name,
                format!(
                    "the output of '{}' is not connected to anything, so its rows would be lost; connect it to a sink",
                    s.name
                ),
            ));
        }
    }
    Ok(())
}

/// Where a path really points, for comparing outputs and inputs: symlinks resolved, and for
/// a file that does not exist yet, its canonical directory joined with its name.
fn canonical(path: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => canonical(if dir.as_os_str().is_empty() { Path::new(".") } else { dir }).join(name),
        _ => path.to_path_buf(),
    }
}

/// A file as the planner compares it: its canonical path, and for an existing file its
/// device and inode, so that a hard link to an input is caught too.
#[derive(Debug, Clone)]
struct FileId {
    path: PathBuf,
    inode: Option<(u64, u64)>,
}

impl FileId {
    fn of(path: &Path) -> FileId {
        #[cfg(unix)]
        let inode = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
        };
        #[cfg(not(unix))]
        let inode = None;
        FileId {
            path: canonical(path),
            inode,
        }
    }
}

impl PartialEq for FileId {
    fn eq(&self, other: &FileId) -> bool {
        self.path == other.path || (self.inode.is_some() && self.inode == other.inode)
    }
}

/// Two outputs (sinks, dead letters, the baseline) resolving to one file, or an output
/// resolving to an input, are plan errors: one would silently replace the other.
fn check_paths(config: &PipelineConfig, positions: &[Position]) -> Result<()> {
    let mut outputs: Vec<(FileId, usize, String)> = Vec::new();
    let mut inputs: Vec<(FileId, usize, String)> = Vec::new();
    for (i, def) in config.steps.iter().enumerate() {
        for (role, key, path) in def.config.file_paths() {
            if path.as_os_str() == "-" {
                continue;
            }
            let entry = (FileId::of(path), i, key.to_owned());
            match role {
                PathRole::Input => inputs.push(entry),
                PathRole::Output => outputs.push(entry),
            }
        }
    }
    let baseline = config.settings.performance.baseline_file.as_ref().map(|b| FileId::of(b));
    let name = |i: usize| config.steps[i].name.as_str();
    for (k, (p, i, key)) in outputs.iter().enumerate() {
        if let Some((_, j, k2)) = outputs[..k].iter().find(|o| o.0 == *p) {
            return Err(Error::plan_at(
                &positions[*i],
                name(*i),
                format!(
                    "{key} of '{}' and {k2} of '{}' are the same file ({}); one would replace the other — give each output its own path",
                    name(*i),
                    name(*j),
                    p.path.display()
                ),
            ));
        }
        if let Some((_, j, k2)) = inputs.iter().find(|o| o.0 == *p) {
            return Err(Error::plan_at(
                &positions[*i],
                name(*i),
                format!(
                    "{key} of '{}' is the input {k2} of '{}' ({}); writing it would replace the data being read — write somewhere else",
                    name(*i),
                    name(*j),
                    p.path.display()
                ),
            ));
        }
        if baseline.as_ref() == Some(p) {
            return Err(Error::plan_at(
                &positions[*i],
                name(*i),
                format!(
                    "{key} of '{}' is Settings.Performance.BaselineFile ({}); give each its own path",
                    name(*i),
                    p.path.display()
                ),
            ));
        }
    }
    Ok(())
}
