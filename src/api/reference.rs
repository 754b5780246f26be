//! The resource reference (`docs/reference.md`): every spec and status field of vtmove's CRDs
//! with its type, default and description, generated from the CRD schemas so the documentation
//! cannot drift from what the API server enforces (a test compares the committed file).

use std::fmt::Write as _;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray,
};

use super::crds::crds;

/// The whole reference as Markdown.
pub fn reference_markdown() -> String {
    let mut out = String::from(
        "<!-- Generated from the CRD schemas by `vtmove reference > docs/reference.md`. Do not edit. -->\n\n\
         # Resource reference\n\n\
         Every field of vtmove's resources (group `vtmove.dev`, version `v1alpha1`), with the \
         type and default the API server enforces. Conditions follow `metav1.Condition`.\n",
    );
    for crd in crds() {
        let kind = &crd.spec.names.kind;
        let Some(version) = crd.spec.versions.first() else {
            continue;
        };
        let Some(schema) = version
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
        else {
            continue;
        };
        let _ = write!(
            out,
            "\n## {kind}\n\nPlural `{}`{}.\n",
            crd.spec.names.plural,
            crd.spec
                .names
                .short_names
                .as_ref()
                .map(|s| format!(", short name `{}`", s.join("`, `")))
                .unwrap_or_default()
        );
        if let Some(d) = &schema.description {
            let _ = writeln!(out, "\n{}", one_line(d));
        }
        for section in ["spec", "status"] {
            let Some(props) = schema.properties.as_ref().and_then(|p| p.get(section)) else {
                continue;
            };
            let _ = write!(
                out,
                "\n### {kind}.{section}\n\n| Field | Type | Default | Description |\n|---|---|---|---|\n"
            );
            let mut rows = Vec::new();
            walk(section, props, &mut rows);
            for (path, type_, default, description) in rows {
                let _ = writeln!(out, "| `{path}` | {type_} | {default} | {description} |");
            }
        }
    }
    out
}

fn walk(path: &str, schema: &JSONSchemaProps, rows: &mut Vec<(String, String, String, String)>) {
    let Some(props) = &schema.properties else {
        if let Some(JSONSchemaPropsOrArray::Schema(items)) = &schema.items
            && items.properties.is_some()
        {
            walk(&format!("{path}[]"), items, rows);
        }
        return;
    };
    for (name, child) in props {
        let child_path = format!("{path}.{name}");
        rows.push((
            child_path.clone(),
            type_of(child),
            child
                .default
                .as_ref()
                .map(|d| format!("`{}`", d.0))
                .unwrap_or_else(|| "".to_string()),
            child
                .description
                .as_deref()
                .map(one_line)
                .unwrap_or_default()
                .replace('|', "\\|"),
        ));
        // Condition internals are metav1.Condition's, documented by Kubernetes.
        if name != "conditions" {
            walk(&child_path, child, rows);
        }
    }
}

fn type_of(schema: &JSONSchemaProps) -> String {
    let base = schema.type_.clone().unwrap_or_else(|| "object".to_string());
    let base = match (&schema.format, &schema.enum_) {
        (_, Some(values)) => format!(
            "enum: {}",
            values
                .iter()
                .map(|v| v
                    .0
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.0.to_string()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        (Some(format), None) => format!("{base} ({format})"),
        (None, None) => base,
    };
    match (&schema.items, base.as_str()) {
        (Some(JSONSchemaPropsOrArray::Schema(items)), "array") => {
            format!("array of {}", type_of(items))
        }
        _ => base,
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spec_field_is_documented() {
        let md = reference_markdown();
        for field in [
            "`spec.sourceKeyspace`",
            "`spec.traffic.primary`",
            "`spec.cutover.timeout`",
            "`spec.complete.ignoreSourceKeyspace`",
            "`status.streams[].copyCycles`",
            "`spec.driftPolicy`",
        ] {
            assert!(md.contains(field), "{field} missing");
        }
        // Every documented row has a description.
        for line in md.lines().filter(|l| l.starts_with("| `")) {
            assert!(
                !line.trim_end().ends_with("|  |"),
                "undocumented field: {line}"
            );
        }
    }
}
