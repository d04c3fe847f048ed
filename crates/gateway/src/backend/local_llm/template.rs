//! The chat template of a ChatML model (`<|im_start|>role\ncontent<|im_end|>\n` per message,
//! then `<|im_start|>assistant\n`), with the default system prompt its GGUF template adds when
//! the conversation has none. The file's Jinja template is not executed: it is recognised as
//! ChatML, and its default system prompt is read from it.

/// A ChatML template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ChatTemplate {
    /// The system message put first when the conversation has none.
    default_system: Option<String>,
}

impl ChatTemplate {
    /// Reads the Jinja `template` from a GGUF file's `tokenizer.chat_template`.
    pub(super) fn from_jinja(template: &str) -> Result<Self, String> {
        if !template.contains("<|im_start|>") || !template.contains("<|im_end|>") {
            return Err("the chat template is not ChatML".into());
        }
        // The newline is written `\n` in a Jinja string, or as itself. The first system turn
        // written out whole is the default (Qwen's template opens one in its tool-calling
        // branch first, with an expression for its text).
        let default_system = ["<|im_start|>system\\n", "<|im_start|>system\n"]
            .iter()
            .flat_map(|open| template.match_indices(open).map(|(at, o)| at + o.len()))
            .filter_map(|start| {
                let (text, _) = template[start..].split_once("<|im_end|>")?;
                // A literal prompt, not an expression of the template.
                (!text.is_empty() && !text.contains(['{', '}', '\'', '"', '+']))
                    .then(|| (start, text.to_owned()))
            })
            .min_by_key(|(start, _)| *start)
            .map(|(_, text)| text);
        Ok(Self { default_system })
    }

    /// The same template without its default system prompt.
    pub(super) fn without_default_system(self) -> Self {
        Self {
            default_system: None,
        }
    }

    /// The prompt for `messages` (role, content), ready for the assistant's answer.
    pub(super) fn render(&self, messages: &[(String, String)]) -> String {
        let mut prompt = String::new();
        let mut turn = |role: &str, content: &str| {
            prompt.push_str("<|im_start|>");
            prompt.push_str(role);
            prompt.push('\n');
            prompt.push_str(content);
            prompt.push_str("<|im_end|>\n");
        };
        if let (Some(system), false) = (
            &self.default_system,
            messages.first().is_some_and(|(role, _)| role == "system"),
        ) {
            turn("system", system);
        }
        for (role, content) in messages {
            turn(role, content);
        }
        prompt.push_str("<|im_start|>assistant\n");
        prompt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-135M-Instruct's template, as its GGUF file carries it.
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    fn messages(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(r, c)| ((*r).to_owned(), (*c).to_owned()))
            .collect()
    }

    #[test]
    fn the_default_system_prompt_comes_first_when_there_is_none() {
        let template = ChatTemplate::from_jinja(SMOLLM2).unwrap();
        assert_eq!(
            template.render(&messages(&[("user", "Hi")])),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
             <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            template.render(&messages(&[("system", "Be brief."), ("user", "Hi")])),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn a_newline_written_as_itself_is_read_too() {
        let template = ChatTemplate::from_jinja(&SMOLLM2.replace("\\n", "\n")).unwrap();
        assert_eq!(
            template.default_system.as_deref(),
            Some("You are a helpful AI assistant named SmolLM, trained by Hugging Face")
        );
    }

    #[test]
    fn a_default_written_after_an_expression_is_found() {
        // The shape of Qwen2.5's template: a system turn built from an expression in the
        // tool-calling branch, then the literal default.
        let qwen = "{%- if tools %}{{- '<|im_start|>system\\n' }}{{- messages[0]['content'] }}{{- '<|im_end|>\\n' }}\
                    {%- else %}{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\
                    {%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}{%- endif %}{%- endif %}";
        let template = ChatTemplate::from_jinja(qwen).unwrap();
        assert_eq!(
            template.default_system.as_deref(),
            Some("You are Qwen, created by Alibaba Cloud. You are a helpful assistant.")
        );
    }

    #[test]
    fn other_templates_are_refused() {
        assert!(ChatTemplate::from_jinja("{{ bos_token }}[INST] {{ m }} [/INST]").is_err());
        let bare = ChatTemplate::from_jinja("{{'<|im_start|>' + role + '<|im_end|>'}}").unwrap();
        assert_eq!(bare.default_system, None);
    }
}
