//! Reports out: X-ARF lines or CSV to one stream, or one file per report.

use std::{io::Write, path::PathBuf};

use super::{source::SourceReport, table, xarf, Context, Format, ReportArgs, ReportError};

/// Writes `reports` to `stdout`, or one file each into `args.out`
/// (`<report_id>.json` or `<report_id>.csv`, written whole then renamed).
pub fn write(
    reports: &[SourceReport],
    args: &ReportArgs,
    context: &Context<'_>,
    stdout: &mut dyn Write,
) -> Result<Vec<PathBuf>, ReportError> {
    let mut written = Vec::new();
    let ids = reports.iter().map(|_| uuid::Uuid::new_v4().to_string());
    match &args.out {
        None => match args.format {
            Format::Xarf => {
                for (r, id) in reports.iter().zip(ids) {
                    writeln!(stdout, "{}", xarf::to_json_line(r, &id, context))?;
                }
            }
            Format::Csv => {
                let mut table = table::Table::new(&mut *stdout, context.internal)?;
                for (r, id) in reports.iter().zip(ids) {
                    table.row(r, &id)?;
                }
                table.finish()?;
            }
        },
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|source| ReportError::Write {
                path: dir.clone(),
                source,
            })?;
            for (r, id) in reports.iter().zip(ids) {
                let (name, text) = match args.format {
                    Format::Xarf => (
                        format!("{id}.json"),
                        format!("{}\n", xarf::to_json_line(r, &id, context)).into_bytes(),
                    ),
                    Format::Csv => {
                        let mut table = table::Table::new(Vec::new(), context.internal)?;
                        table.row(r, &id)?;
                        (format!("{id}.csv"), table.finish()?)
                    }
                };
                let path = dir.join(&name);
                let partial = dir.join(format!(".{name}.partial"));
                std::fs::write(&partial, &text)
                    .and_then(|()| std::fs::rename(&partial, &path))
                    .map_err(|source| ReportError::Write {
                        path: path.clone(),
                        source,
                    })?;
                written.push(path);
            }
        }
    }
    stdout.flush()?;
    Ok(written)
}
