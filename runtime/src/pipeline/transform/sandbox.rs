//! Runs transform components in a wasmtime sandbox.
//!
//! What a guest gets: WASI with no preopened directory, no environment, no sockets or name
//! lookups, a wall clock stuck at 1970 (time comes from the events), plus the `wrt:transform`
//! imports. What it cannot take: more memory than [`Limits::memory`] (the growing call traps)
//! or more than [`Limits::call_timeout`] of one call (an epoch deadline interrupts it).
//! After a failed call the instance is dropped and a fresh one is made for the next call.
//!
//! What a guest prints goes to the host log, and a trap's reason carries what it wrote to
//! stderr during the failed call (a Rust panic's message) instead of a wasm backtrace
//! ([`output`]).
//!
//! Nothing a guest can observe besides its input varies between runs, because a replay must
//! rewrite the same bytes: WASI `random` (secure and insecure) answers from generators
//! seeded by the component's digest and the batch's first source position, `insecure-seed`
//! from the digest alone, and `monotonic-clock` is virtual: it moves [`CLOCK_STEP`] per
//! reading and jumps to a timer's deadline when the guest waits on it, never with real time.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasData, HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store, Trap};
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::bindings::random::{insecure, insecure_seed, random};
use wasmtime_wasi::p2::{DynPollable, Pollable};
use wasmtime_wasi::{HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

mod output;

use self::output::GuestOutput;
use super::{BatchFailure, FailureKind, InstanceError, Transform};
use crate::event::bindings::wrt::transform::{clock, config, logging, primitives, types};
use crate::event::bindings::{Transformer, TransformerPre};
use crate::event::{ChangeEvent, Outcome, Source, Timestamp};

/// How often the epoch advances: the resolution of the per-call CPU deadline.
const TICK: Duration = Duration::from_millis(10);

/// Which compiler turns a component into machine code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compiler {
    /// Cranelift: optimised code, slow to make. For hosts, which run a version for long.
    Optimizing,
    /// Winch, a baseline compiler: code made many times faster, which runs slower. For
    /// checks that run a version a few times (`wrt deploy`).
    Baseline,
}

/// Per-instance resource caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes of linear memory one instance may hold.
    pub memory: usize,
    /// Longest one call (`init` or a batch) may run.
    pub call_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: 128 << 20,
            call_timeout: Duration::from_secs(5),
        }
    }
}

/// The transform's configuration, readable through the `config` import.
pub type TransformConfig = BTreeMap<String, String>;

/// Why a component could not be made ready to run.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a valid WebAssembly component: {0}")]
    Compile(String),
    #[error(
        "Winch, the baseline compiler checks use, could not compile the component: {0}; if \
         it is valid, it may use what Winch lacks (tail calls, exceptions, GC): check it with \
         the hosts' compiler (`wrt deploy --check-with cranelift`)"
    )]
    Baseline(String),
    #[error(
        "the component does not implement the `wrt:transform/transformer` world from sdk/wit/ \
         ({0}); rebuild it against this version of the WIT"
    )]
    World(String),
    #[error("the component failed to start: {0}")]
    Instantiate(String),
    #[error("the transform refused to initialise: {0}")]
    Init(String),
    #[error("component cache at {path}: {source}")]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Compiles components and makes sandboxed instances of them. One per process.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<HostState>,
    cache_dir: Option<PathBuf>,
    compiler: Compiler,
}

/// A component compiled and checked against the world, ready to instantiate.
#[derive(Clone)]
pub struct Compiled {
    digest: String,
    pre: TransformerPre<HostState>,
}

impl Compiled {
    /// SHA-256 of the component's bytes, hex.
    pub fn digest(&self) -> &str {
        &self.digest
    }
}

impl Sandbox {
    /// A sandbox whose compiled components are cached under `cache_dir`, keyed by digest.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Self, LoadError> {
        Sandbox::with_compiler(cache_dir, Compiler::Optimizing)
    }

    /// [`Sandbox::new`] with the given compiler.
    pub fn with_compiler(
        cache_dir: Option<PathBuf>,
        compiler: Compiler,
    ) -> Result<Self, LoadError> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true).epoch_interruption(true);
        if compiler == Compiler::Baseline {
            config.strategy(wasmtime::Strategy::Winch);
        }
        let engine = Engine::new(&config).map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        spawn_epoch_ticker(&engine);

        let mut linker = Linker::new(&engine);
        let world_error = |e: wasmtime::Error| LoadError::World(format!("{e:#}"));
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(world_error)?;
        add_deterministic_wasi(&mut linker).map_err(world_error)?;
        Transformer::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |state| state)
            .map_err(world_error)?;
        Ok(Sandbox {
            engine,
            linker,
            cache_dir,
            compiler,
        })
    }

    /// Compiles `wasm` (or takes it from the cache) and checks it implements the world.
    pub fn compile(&self, wasm: &[u8]) -> Result<Compiled, LoadError> {
        let digest = hex::encode(Sha256::digest(wasm));
        let component = match &self.cache_dir {
            Some(dir) => self.compile_cached(wasm, &digest, dir)?,
            None => self.component(wasm)?,
        };
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(TransformerPre::new)
            .map_err(|e| LoadError::World(format!("{e:#}")))?;
        Ok(Compiled { digest, pre })
    }

    /// Makes a running instance and calls its `init`.
    pub fn instantiate(
        &self,
        compiled: &Compiled,
        config: TransformConfig,
        limits: Limits,
    ) -> Result<WasmTransform, LoadError> {
        let config = Arc::new(config);
        let live = Live::start(compiled, &config, limits)?;
        Ok(WasmTransform {
            compiled: compiled.clone(),
            config,
            limits,
            live: Some(live),
        })
    }

    /// [`Sandbox::compile`] then [`Sandbox::instantiate`].
    pub fn load(
        &self,
        wasm: &[u8],
        config: TransformConfig,
        limits: Limits,
    ) -> Result<WasmTransform, LoadError> {
        self.instantiate(&self.compile(wasm)?, config, limits)
    }

    /// Machine code for `wasm`; a failure names the compiler when it may be Winch's limit.
    fn component(&self, wasm: &[u8]) -> Result<Component, LoadError> {
        Component::new(&self.engine, wasm).map_err(|e| match self.compiler {
            Compiler::Optimizing => LoadError::Compile(format!("{e:#}")),
            Compiler::Baseline => LoadError::Baseline(format!("{e:#}")),
        })
    }

    fn compile_cached(
        &self,
        wasm: &[u8],
        digest: &str,
        dir: &Path,
    ) -> Result<Component, LoadError> {
        // Precompiled code is only valid for the engine that made it.
        let mut engine_hash = std::hash::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut engine_hash);
        let path = dir.join(format!("{digest}-{:016x}.cwasm", engine_hash.finish()));
        if path.exists() {
            if let Ok(component) = deserialize(&self.engine, &path) {
                return Ok(component);
            }
            tracing::warn!(path = %path.display(), "ignoring an unreadable cached component");
        }
        let component = self.component(wasm)?;
        let bytes = component
            .serialize()
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        let cache_err = |source| LoadError::Cache {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(cache_err)?;
        // Write then rename, so a concurrent reader never sees half a file.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes).map_err(cache_err)?;
        std::fs::rename(&tmp, &path).map_err(cache_err)?;
        Ok(component)
    }
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: the file is one this process family wrote with `Component::serialize` into
    // wrt's private cache, named by the digest of its source and the engine's compatibility
    // hash; wasmtime still checks its header and version before using it.
    unsafe { Component::deserialize_file(engine, path) }
}

/// Advances the engine's epoch every [`TICK`] until the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("wrt-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        })
        .expect("spawning the epoch thread");
}

/// Replaces WASI's live randomness and monotonic clock, which `add_to_linker_sync` wired to
/// the host's, with [`DeterministicRandom`] and [`VirtualClock`].
fn add_deterministic_wasi(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    random::add_to_linker::<_, HasSelf<DeterministicRandom>>(linker, |s| &mut s.random)?;
    insecure::add_to_linker::<_, HasSelf<DeterministicRandom>>(linker, |s| &mut s.random)?;
    insecure_seed::add_to_linker::<_, HasSelf<DeterministicRandom>>(linker, |s| &mut s.random)?;
    monotonic_clock::add_to_linker::<_, VirtualClocks>(linker, |s| VirtualClockView {
        clock: &s.clock,
        table: &mut s.table,
    })?;
    linker.allow_shadowing(false);
    Ok(())
}

fn deadline_ticks(limits: Limits) -> u64 {
    (limits.call_timeout.as_millis().div_ceil(TICK.as_millis()) as u64).max(1)
}

/// Everything needed to turn component bytes into a running transform: the sandbox, the
/// pipeline's transform configuration and limits. Cheap to clone into a loading thread.
#[derive(Clone)]
pub struct Loader {
    sandbox: Arc<Sandbox>,
    config: TransformConfig,
    limits: Limits,
}

impl Loader {
    pub fn new(sandbox: Sandbox, config: TransformConfig, limits: Limits) -> Loader {
        Loader {
            sandbox: Arc::new(sandbox),
            config,
            limits,
        }
    }

    /// Compiles (or takes from the cache), checks the world, instantiates, calls `init`.
    pub fn load(&self, wasm: &[u8]) -> Result<WasmTransform, LoadError> {
        self.sandbox.load(wasm, self.config.clone(), self.limits)
    }
}

/// A sandboxed transform instance, reused across batches.
pub struct WasmTransform {
    compiled: Compiled,
    config: Arc<TransformConfig>,
    limits: Limits,
    /// `None` after a failed call, until the next batch starts a fresh instance.
    live: Option<Live>,
}

impl WasmTransform {
    /// Another instance of the same component, with the same configuration and limits.
    pub fn fresh(&self) -> Result<WasmTransform, LoadError> {
        let live = Live::start(&self.compiled, &self.config, self.limits)?;
        Ok(WasmTransform {
            compiled: self.compiled.clone(),
            config: Arc::clone(&self.config),
            limits: self.limits,
            live: Some(live),
        })
    }
}

impl Transform for WasmTransform {
    fn digest(&self) -> &str {
        &self.compiled.digest
    }

    fn another(&self) -> Result<Box<dyn Transform>, InstanceError> {
        let live = Live::start(&self.compiled, &self.config, self.limits)
            .map_err(|e| InstanceError(e.to_string()))?;
        Ok(Box::new(WasmTransform {
            compiled: self.compiled.clone(),
            config: Arc::clone(&self.config),
            limits: self.limits,
            live: Some(live),
        }))
    }

    fn process(&mut self, events: &[ChangeEvent]) -> Result<Vec<Outcome>, BatchFailure> {
        let mut live = match self.live.take() {
            Some(live) => live,
            None => Live::start(&self.compiled, &self.config, self.limits).map_err(|e| {
                BatchFailure {
                    kind: FailureKind::Trap,
                    message: format!("could not restart the transform: {e}"),
                }
            })?,
        };
        let watermark = events
            .iter()
            .map(|e| e.commit_time)
            .max_by_key(|t| (t.seconds, t.nanos));
        let state = live.store.data_mut();
        state.watermark = watermark.unwrap_or(Timestamp {
            seconds: 0,
            nanos: 0,
        });
        state.random.begin_batch(events.first().map(|e| &e.source));
        live.output
            .begin_call(events.first().map_or_else(String::new, |e| {
                format!(
                    "{}/{}@{}",
                    e.source.topic, e.source.partition, e.source.offset
                )
            }));
        live.arm_deadline(self.limits);
        let result = live
            .bindings
            .wrt_transform_transform()
            .call_process(&mut live.store, events);
        match result {
            Ok(outcomes) if outcomes.len() == events.len() => {
                self.live = Some(live);
                Ok(outcomes)
            }
            Ok(outcomes) => Err(BatchFailure {
                kind: FailureKind::Contract,
                message: format!(
                    "returned {} outcomes for {} events",
                    outcomes.len(),
                    events.len()
                ),
            }),
            Err(e) => Err(live.classify(&e)),
        }
    }
}

/// A store with its instance.
struct Live {
    store: Store<HostState>,
    bindings: Transformer,
    output: GuestOutput,
}

impl Live {
    fn start(
        compiled: &Compiled,
        config: &Arc<TransformConfig>,
        limits: Limits,
    ) -> Result<Self, LoadError> {
        let output = GuestOutput::new(&compiled.digest[..12]);
        let wasi = WasiCtxBuilder::new()
            .stdout(output.stream(0))
            .stderr(output.stream(1))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .wall_clock(Epoch1970)
            .build();
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            memory: MemoryCap {
                max: limits.memory,
                hit: None,
            },
            config: Arc::clone(config),
            watermark: Timestamp {
                seconds: 0,
                nanos: 0,
            },
            random: DeterministicRandom::new(&compiled.digest),
            clock: VirtualClock::default(),
            digest: compiled.digest[..12].to_string(),
        };
        let mut store = Store::new(compiled.pre.engine(), state);
        store.limiter(|state| &mut state.memory);
        // Instantiation runs guest start-up code, so it is under the deadline too.
        store.set_epoch_deadline(deadline_ticks(limits));
        let bindings = compiled
            .pre
            .instantiate(&mut store)
            .map_err(|e| LoadError::Instantiate(format!("{e:#}")))?;
        let mut live = Live {
            store,
            bindings,
            output,
        };
        match live
            .bindings
            .wrt_transform_transform()
            .call_init(&mut live.store)
        {
            Ok(Ok(())) => Ok(live),
            Ok(Err(reason)) => Err(LoadError::Init(reason)),
            Err(e) => Err(LoadError::Init(live.classify(&e).to_string())),
        }
    }

    fn arm_deadline(&mut self, limits: Limits) {
        self.store.set_epoch_deadline(deadline_ticks(limits));
    }

    /// Names what went wrong from the trap and the limiter's record, never from message text.
    fn classify(&self, error: &wasmtime::Error) -> BatchFailure {
        if let Some(cap) = &self.store.data().memory.hit {
            return BatchFailure {
                kind: FailureKind::MemoryLimit,
                message: cap.clone(),
            };
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => BatchFailure {
                kind: FailureKind::Timeout,
                message: format!(
                    "the call was stopped after its CPU deadline ({})",
                    error.root_cause()
                ),
            },
            // The trap itself, not the wasm backtrace around it, after what the guest said.
            trap => {
                let what = match trap {
                    Some(trap) => trap.to_string(),
                    None => format!("{error:#}"),
                };
                let said = self.output.call_stderr();
                BatchFailure {
                    kind: FailureKind::Trap,
                    message: if said.is_empty() {
                        what
                    } else {
                        format!("{said} ({what})")
                    },
                }
            }
        }
    }
}

/// What the host keeps per instance.
struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    memory: MemoryCap,
    config: Arc<TransformConfig>,
    /// The `clock.now` answer for the current batch.
    watermark: Timestamp,
    /// The WASI `random` and `insecure-seed` answers.
    random: DeterministicRandom,
    /// The WASI `monotonic-clock`.
    clock: VirtualClock,
    /// Short digest, to tell guests apart in the log.
    digest: String,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

impl logging::Host for HostState {
    fn log(&mut self, level: logging::Level, message: String) {
        let digest = &self.digest;
        match level {
            logging::Level::Trace => tracing::trace!(target: "wrt::guest", digest, "{message}"),
            logging::Level::Debug => tracing::debug!(target: "wrt::guest", digest, "{message}"),
            logging::Level::Info => tracing::info!(target: "wrt::guest", digest, "{message}"),
            logging::Level::Warn => tracing::warn!(target: "wrt::guest", digest, "{message}"),
            logging::Level::Error => tracing::error!(target: "wrt::guest", digest, "{message}"),
        }
    }
}

impl config::Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }

    fn entries(&mut self) -> Vec<(String, String)> {
        self.config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl clock::Host for HostState {
    fn now(&mut self) -> Timestamp {
        self.watermark
    }
}

impl primitives::Host for HostState {
    fn sha256(&mut self, data: Vec<u8>) -> Vec<u8> {
        Sha256::digest(data).to_vec()
    }

    fn hmac_sha256(&mut self, key: Vec<u8>, data: Vec<u8>) -> Vec<u8> {
        hmac_sha256(&key, &data)
    }

    fn hmac_sha256_config(&mut self, config_key: String, data: Vec<u8>) -> Option<Vec<u8>> {
        hmac_sha256_config(&self.config, &config_key, &data)
    }

    fn lower(&mut self, text: String) -> String {
        text.to_lowercase()
    }

    fn trim(&mut self, text: String) -> String {
        match text.trim() {
            trimmed if trimmed.len() == text.len() => text,
            trimmed => trimmed.to_string(),
        }
    }

    fn rfc3339(&mut self, t: Timestamp) -> String {
        t.to_rfc3339()
    }
}

/// Keyed by the configuration entry `config_key`; none when it is not set.
fn hmac_sha256_config(config: &TransformConfig, config_key: &str, data: &[u8]) -> Option<Vec<u8>> {
    let key = config.get(config_key)?;
    Some(hmac_sha256(key.as_bytes(), data))
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::Mac as _;
    let mut mac =
        hmac::Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Caps linear memory and remembers that it did, so a failure is classified without
/// parsing error text.
struct MemoryCap {
    max: usize,
    hit: Option<String>,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired <= self.max {
            return Ok(true);
        }
        let message = format!(
            "memory cap of {} MiB reached: growing from {} MiB to {} MiB",
            self.max >> 20,
            current >> 20,
            desired >> 20
        );
        self.hit = Some(message.clone());
        // An error (not `Ok(false)`) traps the call instead of letting the guest limp on.
        Err(wasmtime::Error::msg(message))
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// Guests see no wall-clock time: output must depend on the input only.
struct Epoch1970;

impl HostWallClock for Epoch1970 {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

/// WASI randomness that a replay draws again: each batch starts fresh generators seeded by
/// the component's digest and the batch's first source position, so the same batch draws
/// the same numbers however many batches the instance ran before. Not for secrets: anyone
/// who knows the digest and the positions can compute every number (and the sandbox holds
/// no secret a guest could protect with them).
struct DeterministicRandom {
    digest: String,
    secure: ByteStream,
    insecure: ByteStream,
    /// `insecure-seed`: one value per component, because language runtimes read it once to
    /// key their hash tables, in whichever batch comes first.
    seed: (u64, u64),
}

impl DeterministicRandom {
    /// The generators for instantiation and `init`, which see no event.
    fn new(digest: &str) -> Self {
        let seed = ByteStream::new("insecure-seed", digest, b"").next_u64_pair();
        DeterministicRandom {
            digest: digest.to_string(),
            secure: ByteStream::new("random", digest, b"start"),
            insecure: ByteStream::new("insecure", digest, b"start"),
            seed,
        }
    }

    /// Reseeds both generators for a batch that begins at `first`.
    fn begin_batch(&mut self, first: Option<&Source>) {
        let mut scope = Vec::new();
        if let Some(source) = first {
            for part in [source.topic.as_bytes(), &source.partition.to_be_bytes()] {
                scope.extend_from_slice(&(part.len() as u64).to_be_bytes());
                scope.extend_from_slice(part);
            }
            scope.extend_from_slice(&source.offset.to_be_bytes());
        }
        self.secure = ByteStream::new("random", &self.digest, &scope);
        self.insecure = ByteStream::new("insecure", &self.digest, &scope);
    }
}

impl random::Host for DeterministicRandom {
    fn get_random_bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        self.secure.bytes(len)
    }

    fn get_random_u64(&mut self) -> wasmtime::Result<u64> {
        Ok(self.secure.next_u64())
    }
}

impl insecure::Host for DeterministicRandom {
    fn get_insecure_random_bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        self.insecure.bytes(len)
    }

    fn get_insecure_random_u64(&mut self) -> wasmtime::Result<u64> {
        Ok(self.insecure.next_u64())
    }
}

impl insecure_seed::Host for DeterministicRandom {
    fn insecure_seed(&mut self) -> wasmtime::Result<(u64, u64)> {
        Ok(self.seed)
    }
}

/// SHA-256 in counter mode over a labelled key: a generator whose output is fixed by its
/// inputs in every wrt version and on every platform, with no dependency to pin.
struct ByteStream {
    key: [u8; 32],
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl ByteStream {
    fn new(label: &str, digest: &str, scope: &[u8]) -> Self {
        let mut key = Sha256::new();
        for part in [
            b"wrt/v1".as_slice(),
            label.as_bytes(),
            digest.as_bytes(),
            scope,
        ] {
            key.update((part.len() as u64).to_be_bytes());
            key.update(part);
        }
        ByteStream {
            key: key.finalize().into(),
            counter: 0,
            block: [0; 32],
            used: 32,
        }
    }

    fn fill(&mut self, mut out: &mut [u8]) {
        while !out.is_empty() {
            if self.used == self.block.len() {
                let mut block = Sha256::new();
                block.update(self.key);
                block.update(self.counter.to_be_bytes());
                self.block = block.finalize().into();
                self.counter += 1;
                self.used = 0;
            }
            let n = out.len().min(self.block.len() - self.used);
            out[..n].copy_from_slice(&self.block[self.used..self.used + n]);
            self.used += n;
            out = &mut out[n..];
        }
    }

    /// `len` bytes, refusing what `wasmtime-wasi` refuses so a guest cannot make the host
    /// allocate without bound.
    fn bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        let max = wasmtime_wasi::random::DEFAULT_MAX_SIZE;
        if len > max {
            wasmtime::bail!("requested {len} random bytes, more than the limit of {max}");
        }
        let mut out = vec![0; len as usize];
        self.fill(&mut out);
        Ok(out)
    }

    fn next_u64(&mut self) -> u64 {
        let mut word = [0; 8];
        self.fill(&mut word);
        u64::from_le_bytes(word)
    }

    fn next_u64_pair(&mut self) -> (u64, u64) {
        (self.next_u64(), self.next_u64())
    }
}

/// How far the virtual monotonic clock moves per reading, and so its resolution: readings
/// strictly increase (a runtime waiting for the clock to move gets on), yet say nothing
/// about how long the guest really ran.
const CLOCK_STEP: u64 = 1_000;

/// WASI's monotonic clock as the host decides it, in nanoseconds from the instance's start:
/// [`CLOCK_STEP`] per reading, and a timer's deadline when the guest waits on it, so a
/// runtime that polls or sleeps (Go's scheduler) still sees time pass, deterministically.
/// Shared with the timers the guest holds, which move it when they are waited on.
#[derive(Clone, Default)]
struct VirtualClock(Arc<AtomicU64>);

impl VirtualClock {
    fn read(&self) -> u64 {
        self.0.fetch_add(CLOCK_STEP, Ordering::Relaxed) + CLOCK_STEP
    }

    fn peek(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn advance_to(&self, instant: u64) {
        self.0.fetch_max(instant, Ordering::Relaxed);
    }
}

/// What the `monotonic-clock` host functions work on.
struct VirtualClockView<'a> {
    clock: &'a VirtualClock,
    table: &'a mut ResourceTable,
}

struct VirtualClocks;

impl HasData for VirtualClocks {
    type Data<'a> = VirtualClockView<'a>;
}

impl monotonic_clock::Host for VirtualClockView<'_> {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        Ok(self.clock.read())
    }

    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        Ok(CLOCK_STEP)
    }

    fn subscribe_instant(
        &mut self,
        when: monotonic_clock::Instant,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        self.timer(when)
    }

    fn subscribe_duration(
        &mut self,
        duration: monotonic_clock::Duration,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        self.timer(self.clock.peek().saturating_add(duration))
    }
}

impl VirtualClockView<'_> {
    fn timer(&mut self, deadline: u64) -> wasmtime::Result<Resource<DynPollable>> {
        let timer = self.table.push(Timer {
            clock: self.clock.clone(),
            deadline,
        })?;
        wasmtime_wasi::p2::subscribe(self.table, timer)
    }
}

/// A pollable for a virtual instant: ready as soon as it is polled, when the clock jumps to
/// its deadline (if not already past it). Nothing else can move virtual time, so waiting in
/// real time would only stall the guest.
struct Timer {
    clock: VirtualClock,
    deadline: u64,
}

#[wasmtime_wasi::async_trait]
impl Pollable for Timer {
    async fn ready(&mut self) {
        self.clock.advance_to(self.deadline);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        // Test case 2 of RFC 4231: a key shorter than the block.
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block is hashed first.
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn the_keyed_hmac_takes_its_key_from_the_configuration() {
        let config = TransformConfig::from([
            ("salt".to_string(), "Jefe".to_string()),
            ("empty".to_string(), String::new()),
        ]);
        let data = b"what do ya want for nothing?";
        assert_eq!(
            hmac_sha256_config(&config, "salt", data),
            Some(hmac_sha256(b"Jefe", data))
        );
        assert_eq!(
            hmac_sha256_config(&config, "empty", data),
            Some(hmac_sha256(b"", data))
        );
        assert_eq!(hmac_sha256_config(&config, "unset", data), None);
    }
}
