//! Log setup: text or JSON lines on stderr. Proxied requests log one line
//! each under the `hubgate::access` target; `RUST_LOG` overrides the level.

use tracing_subscriber::EnvFilter;

use crate::cli::{LogFormat, LogLevel};

/// Builds the filter from the flags and an optional `RUST_LOG` value.
pub(crate) fn filter(
    level: LogLevel,
    access_log: bool,
    rust_log: Option<&str>,
) -> anyhow::Result<EnvFilter> {
    let base = match rust_log {
        Some(directives) if !directives.is_empty() => directives.to_owned(),
        _ => {
            let level = match level {
                LogLevel::Debug => "debug",
                LogLevel::Info => "info",
                LogLevel::Warn => "warn",
                LogLevel::Error => "error",
            };
            // hyper, rustls and bollard are chatty at debug; keep them at info.
            format!("{level},hyper=info,hyper_util=info,rustls=info,h2=info,bollard=info")
        }
    };
    let mut filter = EnvFilter::try_new(base)?;
    if !access_log {
        filter = filter.add_directive("hubgate::access=off".parse()?);
    }
    Ok(filter)
}

/// Installs the global subscriber.
pub(crate) fn init(format: LogFormat, filter: EnvFilter) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, not in `docker logs`.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_log_can_be_turned_off_and_rust_log_wins() {
        let f = filter(LogLevel::Info, false, None).unwrap().to_string();
        assert!(f.contains("hubgate::access=off"), "{f}");
        let f = filter(LogLevel::Info, true, Some("warn"))
            .unwrap()
            .to_string();
        assert_eq!(f, "warn");
        assert!(filter(LogLevel::Info, true, Some("=bad=")).is_err());
    }
}
