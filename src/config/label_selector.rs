//! Kubernetes label selectors (`matchLabels`, `matchExpressions`), as a
//! ServiceMonitor or PodMonitor selects its Services or pods; matched by
//! promfed itself, with Kubernetes's rules.

use std::collections::BTreeMap;

/// A validated selector. Empty selects everything, as in Kubernetes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct LabelSelector {
    pub labels: BTreeMap<String, String>,
    pub expressions: Vec<Expression>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Expression {
    pub key: String,
    pub operator: Operator,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl Operator {
    /// The operator as the API writes it; `None` for any other word.
    pub fn parse(word: &str) -> Option<Operator> {
        match word {
            "In" => Some(Operator::In),
            "NotIn" => Some(Operator::NotIn),
            "Exists" => Some(Operator::Exists),
            "DoesNotExist" => Some(Operator::DoesNotExist),
            _ => None,
        }
    }
}

impl LabelSelector {
    /// Whether an object with `labels` is selected: every term holds.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.expressions.iter().all(|e| e.holds(labels))
    }

    /// Builds one, checking every key and value as Kubernetes does; the
    /// error names the term.
    pub fn new(
        labels: BTreeMap<String, String>,
        expressions: Vec<Expression>,
    ) -> Result<LabelSelector, String> {
        for (k, v) in &labels {
            super::exporter::label_pair(k, v)?;
        }
        for e in &expressions {
            super::exporter::label_pair(&e.key, "")?;
            for v in &e.values {
                super::exporter::label_pair(&e.key, v)?;
            }
            let needs_values = matches!(e.operator, Operator::In | Operator::NotIn);
            if needs_values == e.values.is_empty() {
                return Err(format!(
                    "`{}` {:?}: In and NotIn take values, Exists and DoesNotExist none",
                    e.key, e.operator
                ));
            }
        }
        Ok(LabelSelector {
            labels,
            expressions,
        })
    }
}

impl Expression {
    fn holds(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.contains(v)),
            // Kubernetes: an object without the key is not in the set.
            Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, operator: Operator, values: &[&str]) -> Expression {
        Expression {
            key: key.into(),
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn match_labels_and_every_operator() {
        let s = LabelSelector::new(
            labels(&[("app", "web")]),
            vec![
                expr("tier", Operator::In, &["front", "edge"]),
                expr("env", Operator::NotIn, &["dev"]),
                expr("team", Operator::Exists, &[]),
                expr("legacy", Operator::DoesNotExist, &[]),
            ],
        )
        .unwrap();
        let good = labels(&[("app", "web"), ("tier", "edge"), ("team", "a")]);
        assert!(s.matches(&good), "NotIn holds when the key is absent");
        for (k, v) in [
            ("app", "db"),
            ("tier", "back"),
            ("env", "dev"),
            ("legacy", "x"),
        ] {
            let mut l = good.clone();
            l.insert(k.into(), v.into());
            assert!(!s.matches(&l), "{k}={v} must not match");
        }
        let mut no_team = good.clone();
        no_team.remove("team");
        assert!(!s.matches(&no_team));
        assert!(LabelSelector::default().matches(&BTreeMap::new()));
    }

    #[test]
    fn bad_terms_are_refused_with_their_key() {
        let bad = [
            LabelSelector::new(labels(&[("a/b/c", "x")]), vec![]),
            LabelSelector::new(labels(&[("app", "x\ny")]), vec![]),
            LabelSelector::new(BTreeMap::new(), vec![expr("a", Operator::In, &[])]),
            LabelSelector::new(BTreeMap::new(), vec![expr("a", Operator::Exists, &["x"])]),
            LabelSelector::new(BTreeMap::new(), vec![expr("a b", Operator::Exists, &[])]),
        ];
        for b in bad {
            assert!(b.is_err(), "{b:?}");
        }
        assert_eq!(Operator::parse("in"), None);
    }
}
