//! Log set-up: an `EnvFilter` and text or JSON lines on stderr.

use crate::config::LogFormat;

/// Installs the global subscriber; a second call is ignored.
pub fn init_logging(filter: &str, format: LogFormat) -> Result<(), crate::BoxError> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    Ok(())
}
