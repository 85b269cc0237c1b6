//! The automarking grader behind [`DefaultReply::Automark`](super::DefaultReply::Automark).
//!
//! The automarking tutorial sends the model a JSON object with `question`, `model_answer` and
//! `student_answer` and expects a JSON verdict back. This grader returns a deterministic
//! verdict from a lexical heuristic, so tests and benchmarks can check a full run without a real
//! model. Both answers are lower-cased and split into words at every character that is not a
//! letter or digit, and English stop words are dropped. What remains are content words.
//!
//! - `completeness_score` is the share of the model answer's distinct content words that
//!   occur in the student answer, scaled to 0-10. The answer is satisfactory when that share
//!   is at least [`SATISFACTORY_SHARE`].
//! - `relevance_score` is the share of the student answer's distinct content words that occur
//!   in the model answer or the question, scaled to 0-10.
//! - `confidence_score` grows with the distance of the share from the threshold, from 0.5
//!   at the threshold to 1.0 at a share of 0 or 1.
//!
//! NOTE: the heuristic ignores word order and synonyms, so a paraphrase can fail and a
//! jumble of the right words can pass. Negations (`no`, `not`, `nor`) count as content words,
//! so dropping one from the model answer lowers the share.

use std::collections::HashSet;

use serde_json::{Value, json};

/// Minimum share of the model answer's content words that makes an answer satisfactory.
pub(super) const SATISFACTORY_SHARE: f64 = 0.5;

/// English function words that carry no content. Negations are missing on purpose because
/// they change the meaning of an answer. The short fragments (`s`, `t`, `ll`, ...) are what
/// remains of contractions after splitting at apostrophes.
#[rustfmt::skip]
const STOP_WORDS: &[&str] = &[
    "a", "about", "above", "after", "again", "against", "all", "am", "an", "and", "any", "are", "as", "at", "be",
    "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could", "d", "did", "do",
    "does", "doing", "down", "during", "each", "few", "for", "from", "further", "had", "has", "have", "having",
    "he", "her", "here", "hers", "herself", "him", "himself", "his", "how", "i", "if", "in", "into", "is", "it",
    "its", "itself", "just", "ll", "m", "me", "more", "most", "my", "myself", "now", "of", "off", "on", "once",
    "only", "or", "other", "our", "ours", "ourselves", "out", "over", "own", "re", "s", "same", "she", "should",
    "so", "some", "such", "t", "than", "that", "the", "their", "theirs", "them", "themselves", "then", "there",
    "these", "they", "this", "those", "through", "to", "too", "under", "until", "up", "ve", "very", "was", "we",
    "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your",
    "yours", "yourself", "yourselves",
];

/// The grader's verdict on one student answer.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Grade {
    pub(super) reasoning: String,
    pub(super) satisfactory: bool,
    pub(super) relevance_score: u8,
    pub(super) completeness_score: u8,
    pub(super) confidence_score: f64,
}

impl Grade {
    /// Renders the verdict as the JSON object the automarking tutorial expects.
    pub(super) fn to_json(&self) -> Value {
        json!({
            "reasoning": self.reasoning,
            "satisfactory": self.satisfactory,
            "relevance_score": self.relevance_score,
            "completeness_score": self.completeness_score,
            "confidence_score": self.confidence_score,
        })
    }
}

/// Grades `message` when it is an automarking request and returns the verdict as JSON text.
///
/// Returns `None` when the message has no JSON object with `question`, `model_answer` and
/// `student_answer`. The object may sit inside other text, such as a code fence.
pub(super) fn grade_message(message: &str) -> Option<String> {
    let request = find_json_object(message)?;
    let question = field_text(&request, "question")?;
    let model_answer = field_text(&request, "model_answer")?;
    let student_answer = field_text(&request, "student_answer")?;

    Some(grade(&question, &model_answer, &student_answer).to_json().to_string())
}

/// Grades `student_answer` against `model_answer`, as described in the module docs.
pub(super) fn grade(question: &str, model_answer: &str, student_answer: &str) -> Grade {
    let reference = distinct_content_words(model_answer);
    let student = distinct_content_words(student_answer);
    let student_set: HashSet<&str> = student.iter().map(String::as_str).collect();

    let (matched, missing): (Vec<&String>, Vec<&String>) =
        reference.iter().partition(|word| student_set.contains(word.as_str()));
    let share = if reference.is_empty() {
        // A model answer of stop words only ("It is.") leaves nothing to count, so the
        // student answer must repeat it word for word.
        if normalized_words(model_answer) == normalized_words(student_answer) { 1.0 } else { 0.0 }
    } else {
        ratio(matched.len(), reference.len())
    };
    let satisfactory = share >= SATISFACTORY_SHARE;

    let on_topic: HashSet<String> = reference.iter().cloned().chain(distinct_content_words(question)).collect();
    let relevant = student.iter().filter(|word| on_topic.contains(*word)).count();
    let relevance = if student.is_empty() { 0.0 } else { ratio(relevant, student.len()) };

    // The threshold sits at 0.5, so the distance from it is at most 0.5 and the confidence
    // stays within 0.5..=1.0.
    let confidence = 0.5 + (share - SATISFACTORY_SHARE).abs();
    let verdict = if satisfactory { "satisfactory" } else { "not satisfactory" };
    let missing_words = if missing.is_empty() { "none".to_owned() } else { join_words(&missing) };
    let reasoning = format!(
        "The student answer contains {} of the {} content words of the model answer ({:.0}%), \
         so it is {verdict}. Missing: {missing_words}.",
        matched.len(),
        reference.len(),
        share * 100.0,
    );

    Grade {
        reasoning,
        satisfactory,
        relevance_score: score_out_of_ten(relevance),
        completeness_score: score_out_of_ten(share),
        confidence_score: (confidence * 100.0).round() / 100.0,
    }
}

/// Parses `text` as a JSON object, or else the span from its first `{` to its last `}`.
fn find_json_object(text: &str) -> Option<Value> {
    let trimmed = text.trim();
    if let Ok(value @ Value::Object(_)) = serde_json::from_str(trimmed) {
        return Some(value);
    }

    let start = trimmed.find('{')?;
    let end = trimmed.rfind('}')?;
    let candidate = trimmed.get(start..=end)?;
    match serde_json::from_str(candidate) {
        Ok(value @ Value::Object(_)) => Some(value),
        _ => None,
    }
}

/// Returns a field as text: strings as they are, `null` as empty, anything else as JSON.
fn field_text(object: &Value, key: &str) -> Option<String> {
    match object.get(key)? {
        Value::String(text) => Some(text.clone()),
        Value::Null => Some(String::new()),
        other => Some(other.to_string()),
    }
}

fn normalized_words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Returns the content words of `text` without duplicates, in order of first occurrence so
/// the reasoning text is deterministic.
fn distinct_content_words(text: &str) -> Vec<String> {
    let mut seen = HashSet::new();
    normalized_words(text)
        .into_iter()
        .filter(|word| !STOP_WORDS.contains(&word.as_str()))
        .filter(|word| seen.insert(word.clone()))
        .collect()
}

#[allow(clippy::cast_precision_loss, reason = "word counts stay far below 2^52")]
fn ratio(part: usize, whole: usize) -> f64 {
    part as f64 / whole as f64
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "the value is clamped to 0..=10 first")]
fn score_out_of_ten(share: f64) -> u8 {
    (share * 10.0).round().clamp(0.0, 10.0) as u8
}

fn join_words(words: &[&String]) -> String {
    words.iter().map(|word| word.as_str()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a panic is how a test reports failure")]
mod tests {
    use super::*;

    #[test]
    fn identical_answer_is_satisfactory() {
        let answer = "Photosynthesis converts light energy into chemical energy stored in glucose.";
        let grade = grade("What does photosynthesis do?", answer, answer);
        assert!(grade.satisfactory);
        assert_eq!(grade.completeness_score, 10);
        assert_eq!(grade.relevance_score, 10);
        assert_eq!(grade.confidence_score, 1.0);
        assert!(grade.reasoning.contains("Missing: none."), "{}", grade.reasoning);
    }

    #[test]
    fn unrelated_answer_is_not_satisfactory() {
        let grade = grade(
            "What does photosynthesis do?",
            "Photosynthesis converts light energy into chemical energy stored in glucose.",
            "The French revolution began in 1789.",
        );
        assert!(!grade.satisfactory);
        assert_eq!(grade.completeness_score, 0);
        assert_eq!(grade.relevance_score, 0);
        assert!(grade.reasoning.contains("Missing: photosynthesis, converts"), "{}", grade.reasoning);
    }

    #[test]
    fn stop_words_and_case_are_ignored() {
        let grade = grade("", "The mitochondria is the powerhouse of the cell", "MITOCHONDRIA POWERHOUSE CELL");
        assert!(grade.satisfactory);
        assert_eq!(grade.completeness_score, 10);
    }

    #[test]
    fn half_the_content_words_is_the_threshold() {
        let half = grade("", "red green blue yellow", "red and green");
        assert!(half.satisfactory);
        assert_eq!(half.completeness_score, 5);
        assert_eq!(half.confidence_score, 0.5);

        let less = grade("", "red green blue yellow", "red only");
        assert!(!less.satisfactory);
        assert_eq!(less.completeness_score, 3);
    }

    #[test]
    fn negation_is_a_content_word() {
        let grade = grade("", "not soluble", "soluble");
        assert_eq!(grade.completeness_score, 5);
        assert!(grade.reasoning.contains("Missing: not."), "{}", grade.reasoning);
    }

    #[test]
    fn stop_word_only_reference_needs_exact_words() {
        assert!(grade("", "It is.", "it IS").satisfactory);
        assert!(!grade("", "It is.", "it was").satisfactory);
    }

    #[test]
    fn message_inside_code_fence_is_graded() {
        let task = json!({"question": "q", "model_answer": "blue sky", "student_answer": "blue sky", "marks": 2});
        let message = format!("Grade this:\n```json\n{task}\n```");
        let text = grade_message(&message).unwrap();
        let verdict: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(verdict["satisfactory"], true);
        let keys: Vec<&String> = verdict.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["reasoning", "satisfactory", "relevance_score", "completeness_score", "confidence_score"]);
    }

    #[test]
    fn message_without_grading_fields_is_not_graded() {
        assert_eq!(grade_message("hello there"), None);
        assert_eq!(grade_message(r#"{"question": "q", "model_answer": "a"}"#), None);
        assert_eq!(grade_message("[1, 2]"), None);
    }
}
