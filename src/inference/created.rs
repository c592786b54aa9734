//! A model created with `CREATE MODEL`, bound: its spec (prompt template, mode, target column)
//! beside its [`ModelCall`]. Model relations and `predict_<model>` functions answer through it.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::error::{DataFusionError, Result};

use super::answer::{RowAnswer, meta_array, meta_fields};
use super::bound::BoundModel;
use super::call::ModelCall;
use super::text::text_column;
use crate::bedrock::engine::Engine;
use crate::catalog::model::ModelSpec;

/// A created model and the call that answers for it.
#[derive(Debug, Clone)]
pub struct CreatedModel {
    spec: ModelSpec,
    call: ModelCall,
}

impl CreatedModel {
    /// `spec` answered through `engine`.
    pub fn new(spec: ModelSpec, engine: Arc<Engine>) -> Self {
        let call = ModelCall::new(BoundModel::of_spec(&spec, engine));
        Self { spec, call }
    }

    /// The model's spec.
    #[must_use]
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The bound call.
    #[must_use]
    pub fn call(&self) -> &ModelCall {
        &self.call
    }

    /// The engine.
    #[must_use]
    pub fn engine(&self) -> &Arc<Engine> {
        &self.call.model().engine
    }

    /// What identifies the model and its binding.
    #[must_use]
    pub fn fingerprint(&self) -> String {
        format!("{:?}@{}", self.spec, self.call.model().fingerprint())
    }

    /// The fields this model adds to a row: the target, and `<target>_meta` with provenance.
    #[must_use]
    pub fn output_fields(&self) -> Vec<Field> {
        let mut fields = vec![Field::new(
            self.spec.target.as_str(),
            self.call.answer_type(),
            true,
        )];
        if self.spec.provenance {
            fields.push(Field::new(
                self.spec.meta_column(),
                DataType::Struct(meta_fields()),
                true,
            ));
        }
        fields
    }

    /// The prompts of `rows` rows from the model's input columns (in
    /// [`ModelSpec::input_columns`] order), each cast to text as DataFusion displays it — or,
    /// for `{{image:col}}` and `{{document:col}}`, made an image or a document (see
    /// [`media_column`](super::media_column); a document is named after its URL's file, else its
    /// column). `None` where every input is NULL.
    ///
    /// # Errors
    /// A wrong number of columns, or a column that cannot be shown as text.
    pub fn render(&self, columns: &[ArrayRef], rows: usize) -> Result<Vec<Option<String>>> {
        let inputs = self.spec.input_columns();
        if columns.len() != inputs.len() {
            return Err(DataFusionError::Plan(format!(
                "Model '{}' takes {} input(s) ({}), got {}",
                self.spec.name,
                inputs.len(),
                inputs.join(", "),
                columns.len()
            )));
        }
        let texts: Vec<StringArray> = columns
            .iter()
            .zip(&inputs)
            .map(|(column, input)| match self.spec.media_input(input) {
                None => text_column(column),
                Some(kind) => {
                    let who = format!(
                        "Model '{}' input '{input}' ({{{{{}:{input}}}}})",
                        self.spec.name,
                        kind.name()
                    );
                    let name = crate::bedrock::media::format::name_from(input);
                    let markers = super::media_column::MediaColumn {
                        kind,
                        who: &who,
                        text_format: Some(crate::bedrock::media::Format::Txt),
                        default_name: Some(&name),
                    }
                    .markers(column, &[], &[])?;
                    Ok(StringArray::from(markers))
                }
            })
            .collect::<Result<_>>()?;
        Ok((0..rows)
            .map(|row| {
                let values: Vec<Option<&str>> = texts
                    .iter()
                    .map(|c| {
                        (!datafusion::arrow::array::Array::is_null(c, row)).then(|| c.value(row))
                    })
                    .collect();
                self.spec.render(&values)
            })
            .collect())
    }

    /// The columns a model adds: the target and, with provenance, `<target>_meta`.
    ///
    /// # Errors
    /// A structured answer Arrow cannot decode.
    pub fn output_arrays(&self, answers: &[RowAnswer]) -> Result<Vec<ArrayRef>> {
        let mut arrays = vec![self.call.answer_array(answers)?];
        if self.spec.provenance {
            arrays.push(meta_array(answers)?);
        }
        Ok(arrays)
    }
}
