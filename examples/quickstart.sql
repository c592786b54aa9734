-- The flow of MindsDB's "Amazon Bedrock" document, in datafusion-bedrock.
--
-- Against the built-in emulator (answers are emulated, nothing reaches AWS):
--   cargo run -- --emulator --files examples/files -f examples/quickstart.sql
-- Against Amazon Bedrock: replace the made-up keys below with yours (or drop the three key
-- lines to use your AWS profile / environment), then run it without --emulator.

-- An engine: how to reach Bedrock.
CREATE ML_ENGINE bedrock_engine
FROM bedrock
USING
    aws_access_key_id = 'AQAXEQK89OX07YS34OP',
    aws_secret_access_key = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
    aws_session_token = 'FwoGZXIvYXdzEJr...',
    region_name = 'us-east-1';

-- A model that answers the `question` column.
CREATE MODEL bedrock_model
PREDICT answer
USING
    engine = 'bedrock_engine',
    question_column = 'question',
    max_tokens = 100,
    temperature = 0.3;

-- A model with a prompt template.
CREATE MODEL bedrock_default_model
PREDICT answer
USING
    engine = 'bedrock_engine',
    prompt_template = 'Answer the users input in a helpful way: {{question}}';

-- One question, given in WHERE.
SELECT *
FROM bedrock_default_model
WHERE question = 'What is the capital of Sweden?';

-- Every row of a file, joined with the model: one answer per row.
SELECT *
FROM files.unrelated_questions AS d
JOIN bedrock_default_model AS m;

-- A conversational model keeps the context of the rows before.
CREATE MODEL bedrock_conversational_model
PREDICT answer
USING
    engine = 'bedrock_engine',
    mode = 'conversational',
    question_column = 'question';

SELECT d.question, m.answer
FROM files.related_questions AS d
JOIN bedrock_conversational_model AS m;

SHOW MODELS;
