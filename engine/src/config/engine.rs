//! `Settings.Engine`: one pipeline's override of the engine's switches (whose defaults the
//! decision matrix chose, [`crate::defaults`]).
//!
//! ```yaml
//! Settings:
//!   Engine:
//!     PortFlavour: flume      # crossbeam (default) | flume | std | tokio
//!     Pooling: object-pool    # lock-free (default) | object-pool | none
//!     ChunkSize: 1000         # rows per chunk of sources that set no ChunkSize
//!     BufferSize: 32          # chunks per port when neither the connection nor DefaultChannel sets it
//! ```

use super::{Node, Obj, Settings};
use crate::defaults::{self, limits};
use crate::error::Result;
use crate::pool::Pooling;
use crate::port::PortFlavour;

/// The engine's switches for one run (`Settings.Engine`; defaults from [`crate::defaults`]).
/// A run reports the ones it used ([`crate::RunSummary::strategy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct EngineSettings {
    /// The queue behind every port.
    pub port_flavour: PortFlavour,
    /// How the I/O buffers are recycled.
    pub pooling: Pooling,
    /// Rows per chunk of sources (and of `Sort`'s output) that set no `ChunkSize`
    /// (`BatchSize`) of their own.
    pub chunk_size: usize,
    /// Chunks per port when neither the connection nor `Settings.DefaultChannel` (or
    /// `channels.default`) sets `BufferSize`.
    pub buffer_size: usize,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            port_flavour: defaults::DEFAULT_PORT_FLAVOUR,
            pooling: defaults::DEFAULT_POOLING,
            chunk_size: defaults::DEFAULT_CHUNK_SIZE,
            buffer_size: defaults::DEFAULT_BUFFER_SIZE_CHUNKS,
        }
    }
}

impl EngineSettings {
    /// Reads an `Engine` block.
    ///
    /// # Errors
    /// An unknown key or value, or a number out of range, with file:line and key path.
    pub fn parse(node: &Node<'_>) -> Result<EngineSettings> {
        let mut o = node.obj()?;
        let mut e = EngineSettings::default();
        if let Some(n) = o.take(&["PortFlavour", "PortFlavor"])? {
            e.port_flavour = n.string()?.parse().map_err(|m: String| n.err(m))?;
        }
        if let Some(n) = o.take(&["Pooling"])? {
            e.pooling = n.string()?.parse().map_err(|m: String| n.err(m))?;
        }
        if let Some(n) = o.take(&["ChunkSize"])? {
            e.chunk_size = n.u64_in(1, limits::MAX_CHUNK_ROWS)? as usize;
        }
        if let Some(n) = o.take(&["BufferSize"])? {
            e.buffer_size = n.u64_in(1, limits::MAX_BUFFER_CHUNKS)? as usize;
        }
        o.finish()?;
        Ok(e)
    }
}

/// Takes `Settings.Engine` first, so that the default channel (and through it every
/// connection and channel profile) starts from its `BufferSize`.
pub(super) fn parse_into(settings: &mut Obj<'_>, s: &mut Settings) -> Result<()> {
    if let Some(n) = settings.take(&["Engine"])? {
        s.engine = EngineSettings::parse(&n)?;
        s.default_channel.buffer_size = s.engine.buffer_size;
    }
    Ok(())
}
