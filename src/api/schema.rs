//! Small adjustments to the schemas kube-derive and schemars generate, so that the CRDs read well
//! in `kubectl explain` and keep every field's own description.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};

/// A schemars transform for enums: drops the type's own description from its schema.
///
/// A field's description must describe the field. For an `Option<Enum>` field, kube's
/// optional-enum rewrite copies the enum type's schema over the field's, description included,
/// so without this the field would show the type's description instead of its own.
pub(crate) fn drop_type_description(schema: &mut schemars::Schema) {
    schema.remove("description");
}

/// Joins the hard-wrapped lines of a doc comment into paragraphs: lines within a paragraph are
/// joined with a space, blank lines separate paragraphs, and lines starting a list item (`- `,
/// `* `) stay on their own line.
pub fn reflow(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, paragraph) in text.split("\n\n").enumerate() {
        if i > 0 {
            out.push_str("\n\n");
        }
        let mut first = true;
        for line in paragraph.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if !first {
                let list_item = line.starts_with("- ") || line.starts_with("* ");
                out.push(if list_item { '\n' } else { ' ' });
            }
            out.push_str(line);
            first = false;
        }
    }
    out
}

/// Reflows every description in the CRD (schemas and printer columns) with [`reflow`].
pub fn reflow_descriptions(crd: &mut CustomResourceDefinition) {
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            for_each_schema_mut(schema, &mut |s| {
                if let Some(d) = s.description.as_mut() {
                    *d = reflow(d);
                }
            });
        }
        for column in version.additional_printer_columns.iter_mut().flatten() {
            if let Some(d) = column.description.as_mut() {
                *d = reflow(d);
            }
        }
    }
}

/// Calls `f` on `schema` and on every schema nested in it.
pub fn for_each_schema_mut(schema: &mut JSONSchemaProps, f: &mut impl FnMut(&mut JSONSchemaProps)) {
    f(schema);
    for child in schema.properties.iter_mut().flat_map(|p| p.values_mut()) {
        for_each_schema_mut(child, f);
    }
    for child in schema
        .pattern_properties
        .iter_mut()
        .flat_map(|p| p.values_mut())
    {
        for_each_schema_mut(child, f);
    }
    match schema.items.as_mut() {
        Some(JSONSchemaPropsOrArray::Schema(child)) => for_each_schema_mut(child, f),
        Some(JSONSchemaPropsOrArray::Schemas(children)) => {
            for child in children {
                for_each_schema_mut(child, f);
            }
        }
        None => {}
    }
    for or_bool in [
        schema.additional_properties.as_mut(),
        schema.additional_items.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        if let JSONSchemaPropsOrBool::Schema(child) = or_bool {
            for_each_schema_mut(child, f);
        }
    }
    for list in [
        schema.all_of.as_mut(),
        schema.any_of.as_mut(),
        schema.one_of.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        for child in list {
            for_each_schema_mut(child, f);
        }
    }
    if let Some(child) = schema.not.as_mut() {
        for_each_schema_mut(child, f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_wrapped_lines() {
        assert_eq!(reflow("one\ntwo\nthree"), "one two three");
        assert_eq!(reflow("single"), "single");
    }

    #[test]
    fn keeps_paragraphs_and_lists() {
        assert_eq!(
            reflow("intro\ncontinued\n\nValues:\n- a\n- b"),
            "intro continued\n\nValues:\n- a\n- b"
        );
    }

    #[test]
    fn visits_nested_schemas() {
        let mut schema: JSONSchemaProps = serde_json::from_value(serde_json::json!({
            "type": "object",
            "description": "a\nb",
            "properties": {
                "list": {
                    "type": "array",
                    "description": "c\nd",
                    "items": {"type": "string", "description": "e\nf"}
                }
            }
        }))
        .unwrap();
        let mut seen = 0;
        for_each_schema_mut(&mut schema, &mut |s| {
            if let Some(d) = s.description.as_mut() {
                *d = reflow(d);
                seen += 1;
            }
        });
        assert_eq!(seen, 3);
        assert_eq!(schema.description.as_deref(), Some("a b"));
    }
}
